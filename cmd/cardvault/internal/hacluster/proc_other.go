//go:build !linux

package hacluster

import "syscall"

// procAttr runs a keeper as cred in its own process group.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
