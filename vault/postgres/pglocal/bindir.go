package pglocal

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned by FindBinDir (and Start) when no directory holding
// both initdb and postgres can be found.
var ErrNoBinaries = errors.New("pglocal: PostgreSQL server binaries (initdb, postgres) not found " +
	"on $PATH, via `pg_config --bindir`, under /usr/lib/postgresql/*/bin or in /usr/local/pgsql/bin; " +
	"install them with: apt-get install postgresql")

// FindBinDir returns the directory holding initdb and postgres. It looks on
// $PATH first (following symlinks), then at `pg_config --bindir`, then at the
// highest version under /usr/lib/postgresql/*/bin, then /usr/local/pgsql/bin.
// It returns ErrNoBinaries, which says how to install them, when none has both.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if dir, ok := dirOfInitdb(p); ok {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServer(dir) {
			return dir, nil
		}
	}
	for _, dir := range append(versionedBinDirs(), "/usr/local/pgsql/bin") {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

// dirOfInitdb returns the directory of initdb at p that also holds postgres:
// the symlink's target directory first (Debian-style /usr/local/bin links
// into /usr/lib/postgresql/N/bin), then p's own directory.
func dirOfInitdb(p string) (string, bool) {
	if real, err := filepath.EvalSymlinks(p); err == nil && hasServer(filepath.Dir(real)) {
		return filepath.Dir(real), true
	}
	if abs, err := filepath.Abs(p); err == nil && hasServer(filepath.Dir(abs)) {
		return filepath.Dir(abs), true
	}
	return "", false
}

// versionedBinDirs returns /usr/lib/postgresql/*/bin, highest version first.
func versionedBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		return versionLess(filepath.Base(filepath.Dir(dirs[j])), filepath.Base(filepath.Dir(dirs[i])))
	})
	return dirs
}

// versionLess compares dotted version numbers such as "9.6" and "15"
// numerically; parts that are not numbers compare as 0.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// hasServer reports whether dir holds executable initdb and postgres files.
func hasServer(dir string) bool {
	if dir == "" {
		return false
	}
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
