package hacluster

import "syscall"

// procAttr runs a keeper as cred in its own process group, sent SIGTERM
// when the thread that started it dies.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
