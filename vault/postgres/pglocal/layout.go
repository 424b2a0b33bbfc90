package pglocal

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// RelocatedFile is the file Start writes into the requested directory when,
// running as root, it had to place the server's files elsewhere; it holds
// that other directory's path.
const RelocatedFile = "relocated-to"

// maxSocketDir is the longest socket directory that leaves room for
// "/.s.PGSQL.65535" in a unix socket address (sun_path is 108 bytes on Linux
// and 104 on macOS, including the terminating NUL).
const maxSocketDir = 103 - len("/.s.PGSQL.65535")

// layout is where a server's files live.
type layout struct {
	dir        string   // holds data/ and, usually, the socket
	data       string   // the PostgreSQL data directory
	socket     string   // the unix socket directory (-k)
	tempSocket string   // socket directory Start created and Stop removes
	notes      []string // deviations from the requested dir, for the log
}

// prepareLayout creates dir if needed and decides where the data directory
// and socket go. As root (acct != nil) it moves everything to
// /tmp/cardvault-<hash of dir> when acct cannot reach dir, and gives the
// directories to acct. It returns an error when a directory cannot be
// created, is untrusted, or cannot be chowned.
func prepareLayout(dir string, acct *account) (*layout, error) {
	abs, err := makeDir(dir)
	if err != nil {
		return nil, err
	}
	l := &layout{dir: abs}
	if acct != nil && !acct.canTraverse(filepath.Dir(abs)) {
		if err := l.relocate(abs, acct); err != nil {
			return nil, err
		}
	}
	l.data = filepath.Join(l.dir, "data")
	l.socket = l.dir
	if len(l.socket) > maxSocketDir {
		if err := l.useTempSocket(); err != nil {
			return nil, err
		}
	}
	if err := acct.chownTree(l.dir); err != nil {
		l.removeTempSocket()
		return nil, err
	}
	if l.tempSocket != "" {
		if err := acct.chownTree(l.tempSocket); err != nil {
			l.removeTempSocket()
			return nil, err
		}
	}
	return l, nil
}

// makeDir returns dir as an absolute path without symlinks, creating it
// (mode 0700, parents 0755) if it does not exist.
func makeDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("pglocal: %w", err)
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return "", fmt.Errorf("pglocal: %w", err)
		}
		if err := os.Mkdir(abs, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("pglocal: %w", err)
		}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("pglocal: %w", err)
	}
	return real, nil
}

// relocate moves the layout to /tmp/cardvault-<hash of abs>, which is stable
// for a given abs so that restarts find the same data, and leaves the new
// path in abs/RelocatedFile.
func (l *layout) relocate(abs string, acct *account) error {
	sum := sha256.Sum256([]byte(abs))
	alt := filepath.Join("/tmp", "cardvault-"+hex.EncodeToString(sum[:6]))
	if err := ensureTrustedDir(alt, acct); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(abs, RelocatedFile), []byte(alt+"\n"), 0o644); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	l.dir = alt
	l.notes = append(l.notes, fmt.Sprintf(
		"running as root: user %s cannot reach %s (a parent directory lacks search permission), so the server's files are in %s instead",
		acct.name, abs, alt))
	return nil
}

// ensureTrustedDir creates path (0700) unless it exists, and returns an
// error unless it is a real directory (not a symlink) owned by root or acct:
// /tmp is shared, and another user could have planted it.
func ensureTrustedDir(path string, acct *account) error {
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pglocal: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || (st.Uid != 0 && st.Uid != acct.uid) {
		return fmt.Errorf("pglocal: %s exists but is not a directory owned by root or %s; remove it", path, acct.name)
	}
	return nil
}

// useTempSocket puts the socket in a fresh short directory under /tmp.
func (l *layout) useTempSocket() error {
	tmp, err := os.MkdirTemp("/tmp", "pgsock-")
	if err != nil {
		return fmt.Errorf("pglocal: socket directory: %w", err)
	}
	l.socket, l.tempSocket = tmp, tmp
	l.notes = append(l.notes, fmt.Sprintf("%s is too long for a unix socket path, so the socket is in %s", l.dir, tmp))
	return nil
}

func (l *layout) removeTempSocket() {
	if l.tempSocket != "" {
		_ = os.RemoveAll(l.tempSocket)
	}
}
