//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

var errNoProc = errors.New("bench: CPU and memory of the vault are read from /proc, on Linux only")

// procCPUSeconds is unavailable without /proc.
func procCPUSeconds(int) (float64, error) { return 0, errNoProc }

// procMemKB is unavailable without /proc.
func procMemKB(int, string) (int64, error) { return 0, errNoProc }

// setChildAttr does nothing without Linux's parent-death signal.
func setChildAttr(*exec.Cmd) {}

// memTotalGB is unknown without /proc.
func memTotalGB() float64 { return 0 }

// procParent is unavailable without /proc.
func procParent(int) (int, error) { return 0, errNoProc }

// procTreeCPUSeconds is unavailable without /proc.
func procTreeCPUSeconds(int) (float64, error) { return 0, errNoProc }
