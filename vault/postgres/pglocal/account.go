package pglocal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is the unprivileged user initdb and postgres run as when the
// caller is root (both refuse to run as root). A nil *account means "run as
// the current user".
type account struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32
}

// serverAccount returns nil when not running as root. As root it returns the
// `postgres` system user if it exists, else `nobody`, or an error when
// neither exists.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		return newAccount(u)
	}
	return nil, errors.New("pglocal: running as root, and neither a `postgres` nor a `nobody` user exists " +
		"to run the server as (initdb and postgres refuse root); create one: useradd --system postgres")
}

func newAccount(u *user.User) (*account, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pglocal: user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pglocal: user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid), groups: []uint32{uint32(gid)}}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != a.gid {
				a.groups = append(a.groups, uint32(g))
			}
		}
	}
	return a, nil
}

// credential returns the process credential to run as, nil for a nil account.
func (a *account) credential() *syscall.Credential {
	if a == nil {
		return nil
	}
	return &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}
}

// canTraverse reports whether the account may search (x permission) path and
// every directory above it, judged by mode bits (ACLs are not consulted).
func (a *account) canTraverse(path string) bool {
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() || !a.mayUse(fi, 0o1) {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// mayUse reports whether the account has the permission bit want (1 = x,
// 2 = w, 4 = r) on the file fi.
func (a *account) mayUse(fi fs.FileInfo, want fs.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return perm>>6&want == want
	case a.inGroup(st.Gid):
		return perm>>3&want == want
	default:
		return perm&want == want
	}
}

func (a *account) inGroup(gid uint32) bool {
	for _, g := range a.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// chownTree gives path and everything below it to the account; a no-op for
// a nil account.
func (a *account) chownTree(path string) error {
	if a == nil {
		return nil
	}
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.uid), int(a.gid))
	})
	if err != nil {
		return fmt.Errorf("pglocal: giving %s to user %s: %w", path, a.name, err)
	}
	return nil
}
