package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUSeconds returns utime+stime of process pid from /proc/<pid>/stat, or
// an error when the process is gone or the file cannot be parsed.
func CPUSeconds(pid int) (float64, error) {
	f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return float64(utime+stime) / clockTicks, nil
}

// MemKB returns field (VmRSS, VmHWM, …) of /proc/<pid>/status in kB, or
// an error when the process is gone or has no such field.
func MemKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		kb, _ := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		return strconv.ParseInt(kb, 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// setParentDeathSignal makes the kernel send sig to the child when the
// thread that started it dies.
func setParentDeathSignal(cmd *exec.Cmd, sig syscall.Signal) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: sig}
}

// MemTotalGB returns the machine's memory from /proc/meminfo, or 0.
func MemTotalGB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / (1 << 20)
		}
	}
	return 0
}

// ParentPID returns the parent pid of process pid, or an error when the
// process is gone.
func ParentPID(pid int) (int, error) {
	f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// procStatFields returns the fields of /proc/<pid>/stat after the command
// name: f[0] is the state (field 3), f[1] the parent pid, f[11] utime.
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}

// TreeCPUSeconds returns the CPU time of process root and of its living
// children (a PostgreSQL server's postmaster and backends), or an error
// when root is gone.
func TreeCPUSeconds(root int) (float64, error) {
	total, err := CPUSeconds(root)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		f, err := procStatFields(pid)
		if err != nil || f[1] != strconv.Itoa(root) {
			continue
		}
		if s, err := CPUSeconds(pid); err == nil {
			total += s
		}
	}
	return total, nil
}
