package vaulttest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// GnuPG runs the gpg command line in a temporary home of its own, as an
// independent OpenPGP peer of the vault.
type GnuPG struct {
	tb   testing.TB
	bin  string
	Home string // the temporary GNUPGHOME
}

var gpgInstall struct {
	once sync.Once
	err  error
}

// GPG returns a GnuPG with a fresh home, removed (and its agent stopped)
// when tb ends. When gpg is missing it installs the gnupg package with
// apt-get; it skips tb only when that is impossible (no apt-get, not root,
// no package source).
func GPG(tb testing.TB) *GnuPG {
	tb.Helper()
	bin, err := exec.LookPath("gpg")
	if err != nil {
		gpgInstall.once.Do(func() { gpgInstall.err = installGnuPG() })
		if bin, err = exec.LookPath("gpg"); err != nil {
			tb.Skipf("vaulttest: gpg is missing and could not be installed with apt-get: %v", gpgInstall.err)
		}
	}
	home, err := os.MkdirTemp("", "gpg") // short: the agent's socket path has a length limit
	if err != nil {
		tb.Fatalf("vaulttest: gpg home: %v", err)
	}
	g := &GnuPG{tb: tb, bin: bin, Home: home}
	tb.Cleanup(func() {
		if conf, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(conf, "--kill", "gpg-agent")
			cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
			_ = cmd.Run()
		}
		_ = os.RemoveAll(home)
	})
	return g
}

// installGnuPG runs apt-get install gnupg; it returns why it could not.
func installGnuPG() error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "gnupg") // other test packages may be installing at once
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.Run()
	}
	if install() == nil {
		return nil
	}
	if err := exec.CommandContext(ctx, "apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-q").Run(); err != nil {
		return err
	}
	return install()
}

// Run runs gpg in batch mode with args and stdin, and returns its stdout;
// it fails tb when gpg fails.
func (g *GnuPG) Run(stdin []byte, args ...string) []byte {
	g.tb.Helper()
	out, errOut, err := g.Try(stdin, args...)
	if err != nil {
		g.tb.Fatalf("vaulttest: gpg %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// Try runs gpg like Run and returns its stdout, stderr and error.
func (g *GnuPG) Try(stdin []byte, args ...string) ([]byte, []byte, error) {
	cmd := exec.Command(g.bin, append([]string{"--homedir", g.Home, "--batch", "--yes", "--no-tty", "--trust-model", "always"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// ImportKey imports an armored key into the home and returns nothing; it
// fails tb on error.
func (g *GnuPG) ImportKey(armored string) {
	g.tb.Helper()
	g.Run([]byte(armored), "--import")
}

// Encrypt returns clear encrypted to recipient (a key id, fingerprint or
// user id of an imported key), in binary OpenPGP.
func (g *GnuPG) Encrypt(recipient string, clear []byte) []byte {
	g.tb.Helper()
	return g.Run(clear, "--encrypt", "--recipient", recipient)
}

// GenerateKey makes a key pair without passphrase for uid (an e-mail-style
// user id) with algo ("rsa3072", "rsa2048", …) able to sign and encrypt,
// and returns its armored public key.
func (g *GnuPG) GenerateKey(uid, algo string) string {
	g.tb.Helper()
	g.Run(nil, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", uid, algo, "encr,sign", "never")
	return string(g.Run(nil, "--armor", "--export", uid))
}

// Decrypt returns the clear content of an OpenPGP message to a key of the
// home, or gpg's error.
func (g *GnuPG) Decrypt(msg []byte) ([]byte, error) {
	out, errOut, err := g.Try(msg, "--pinentry-mode", "loopback", "--passphrase", "", "--decrypt")
	if err != nil {
		return nil, fmt.Errorf("gpg --decrypt: %w: %s", err, errOut)
	}
	return out, nil
}
