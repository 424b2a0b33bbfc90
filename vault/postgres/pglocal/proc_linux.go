package pglocal

import "syscall"

// serverProcAttr puts postgres in its own process group (a terminal's Ctrl-C
// reaches only the Go program, which stops the server itself), runs it as
// cred when non-nil, and asks the kernel to send it SIGINT (fast shutdown) if
// the thread that started it dies, so a crashed or killed test binary does
// not leave a server behind.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGINT}
}
