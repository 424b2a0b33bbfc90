package vaulttest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StripeMockModule is the stripe-mock release the contract tests run: it
// validates requests against Stripe's OpenAPI spec.
const StripeMockModule = "github.com/stripe/stripe-mock@v0.203.0"

// StripeMock returns the base URL (http, loopback) of a stripe-mock started
// for tb and stopped when it ends, installing it with `go install` when it
// is not on PATH or in GOPATH/bin. It skips tb, saying why, only when
// stripe-mock cannot be installed.
func StripeMock(tb testing.TB) string {
	tb.Helper()
	bin, err := findStripeMock()
	if err != nil {
		tb.Skipf("stripe-mock unavailable (%v); install it with: go install %s", err, StripeMockModule)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("vaulttest: stripe-mock: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, "-http-addr", addr)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("vaulttest: stripe-mock: %v", err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/customers")
		if err == nil {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stripe-mock did not start on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process with a deadline
	}
}

// findStripeMock looks for stripe-mock on PATH and in GOPATH/bin, and
// installs it there when absent.
func findStripeMock() (string, error) {
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	gobin, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", err
	}
	p := filepath.Join(strings.TrimSpace(string(gobin)), "bin", "stripe-mock")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "go", "install", StripeMockModule)
	install.Env = append(os.Environ(), "GOBIN="+filepath.Dir(p), "GOFLAGS=")
	if out, err := install.CombinedOutput(); err != nil {
		return "", errors.New(strings.TrimSpace(string(out)))
	}
	return p, nil
}
