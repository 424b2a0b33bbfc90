package pglocal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clearStalePidFile deals with a postmaster.pid left by a server that is
// gone. If its process no longer exists, postgres removes the file itself.
// But after a reboot or container restart the pid may belong to an unrelated
// process, and postgres would then refuse to start; when /proc shows that
// process is not a postgres on this data directory, the file is removed.
// It returns an error when a server on this data directory is still running.
func clearStalePidFile(data string, w io.Writer) error {
	path := filepath.Join(data, "postmaster.pid")
	pid := readPid(path)
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return nil // dead: postgres handles it
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil // no /proc: leave it to postgres
	}
	if bytes.Contains(cmdline, []byte("\x00"+data+"\x00")) {
		return fmt.Errorf("pglocal: a postgres server (pid %d) is already running on %s; stop it with: kill -INT %d", pid, data, pid)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("pglocal: removing stale %s: %w", path, err)
	}
	fmt.Fprintf(w, "pglocal: removed stale %s (pid %d is now another process)\n", path, pid)
	return nil
}

// readPid returns the pid on the first line of a postmaster.pid, or 0.
func readPid(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}
