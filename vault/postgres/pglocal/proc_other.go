//go:build unix && !linux

package pglocal

import "syscall"

// serverProcAttr puts postgres in its own process group (a terminal's Ctrl-C
// reaches only the Go program, which stops the server itself) and runs it as
// cred when non-nil.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
