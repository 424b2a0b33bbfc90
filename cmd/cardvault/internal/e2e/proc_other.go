//go:build !linux

package e2e

import (
	"errors"
	"os/exec"
	"syscall"
)

var errNoProc = errors.New("e2e: CPU and memory of a process are read from /proc, on Linux only")

// CPUSeconds is unavailable without /proc: it returns an error.
func CPUSeconds(int) (float64, error) { return 0, errNoProc }

// MemKB is unavailable without /proc: it returns an error.
func MemKB(int, string) (int64, error) { return 0, errNoProc }

// setParentDeathSignal does nothing without Linux's parent-death signal.
func setParentDeathSignal(*exec.Cmd, syscall.Signal) {}

// MemTotalGB is unknown without /proc: it returns 0.
func MemTotalGB() float64 { return 0 }

// ParentPID is unavailable without /proc: it returns an error.
func ParentPID(int) (int, error) { return 0, errNoProc }

// TreeCPUSeconds is unavailable without /proc: it returns an error.
func TreeCPUSeconds(int) (float64, error) { return 0, errNoProc }
