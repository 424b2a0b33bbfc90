package pglocal

import (
	"path/filepath"
	"strings"
	"syscall"
)

// Account is the user PostgreSQL's own programs (initdb, postgres, and
// tools that run them such as pg_autoctl) run as: the caller itself, or,
// when the caller is root, the unprivileged account Start uses. It lets
// other runners of PostgreSQL share Start's rules.
type Account struct{ acct *account }

// ServerAccount returns the account to run PostgreSQL's programs as: the
// current user, or as root the `postgres` system user (else `nobody`). It
// returns an error when running as root and neither user exists.
func ServerAccount() (Account, error) {
	a, err := serverAccount()
	return Account{a}, err
}

// Name returns the account's user name, "" for the current user.
func (a Account) Name() string {
	if a.acct == nil {
		return ""
	}
	return a.acct.name
}

// Credential returns the credential a child process must run with, nil for
// the current user.
func (a Account) Credential() *syscall.Credential { return a.acct.credential() }

// Own gives path and everything below it to the account; a no-op for the
// current user. It returns an error naming the path when a chown fails.
func (a Account) Own(path string) error { return a.acct.chownTree(path) }

// PrepareDir creates dir (mode 0700) for files the account's programs own,
// as Start does for a server's directory, and returns the directory to
// use: dir itself (absolute), or, as root when the account cannot reach
// dir, /tmp/cardvault-<hash of dir> (its path written to dir/RelocatedFile),
// with a note saying so. The directory is given to the account. It returns
// an error when a directory cannot be created, trusted or chowned.
func (a Account) PrepareDir(dir string) (path, note string, err error) {
	abs, err := makeDir(dir)
	if err != nil {
		return "", "", err
	}
	l := &layout{dir: abs}
	if a.acct != nil && !a.acct.canTraverse(filepath.Dir(abs)) {
		if err := l.relocate(abs, a.acct); err != nil {
			return "", "", err
		}
	}
	if err := a.acct.chownTree(l.dir); err != nil {
		return "", "", err
	}
	return l.dir, strings.Join(l.notes, "; "), nil
}
