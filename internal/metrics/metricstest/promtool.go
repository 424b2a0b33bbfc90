// Package metricstest is what tests of the vault's metrics share: finding
// (or installing) Prometheus's promtool, running its checks, and reading an
// exposition's series.
package metricstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// aptPackage is the Debian package that provides promtool.
const aptPackage = "prometheus"

var (
	promtoolOnce sync.Once
	promtoolPath string
	promtoolErr  error // why promtool cannot be had; skip with it
)

// Promtool returns the path of promtool. When it is missing it installs
// Debian's prometheus package with apt-get (as root, or with passwordless
// sudo), the way the tests get PostgreSQL, without letting the package start
// a Prometheus server; it skips tb when it cannot install (no apt-get, not
// root and no sudo) and fails tb when the install fails.
func Promtool(tb testing.TB) string {
	tb.Helper()
	promtoolOnce.Do(func() { promtoolPath, promtoolErr = findOrInstall(tb) })
	if promtoolErr != nil {
		var skip skipError
		if errors.As(promtoolErr, &skip) {
			tb.Skipf("promtool: %v", promtoolErr)
		}
		tb.Fatalf("promtool: %v", promtoolErr)
	}
	return promtoolPath
}

// skipError is a reason to skip rather than fail.
type skipError struct{ msg string }

func (e skipError) Error() string { return e.msg }

// findOrInstall returns promtool's path, installing the package when it is
// missing and it may.
func findOrInstall(tb testing.TB) (string, error) {
	if p, err := exec.LookPath("promtool"); err == nil {
		return p, nil
	}
	sudo, err := privilege()
	if err != nil {
		return "", err
	}
	tb.Logf("promtool: installing the Debian package %s with apt-get", aptPackage)
	if err := install(sudo); err != nil {
		return "", err
	}
	return exec.LookPath("promtool")
}

// privilege returns the command prefix that runs apt-get as root: none when
// this process is root, "sudo -n" when sudo needs no password; otherwise a
// skipError saying so.
func privilege() ([]string, error) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil, skipError{"promtool is missing and there is no apt-get to install it: install Prometheus's promtool"}
	}
	if os.Geteuid() == 0 {
		return nil, nil
	}
	if exec.Command("sudo", "-n", "true").Run() == nil {
		return []string{"sudo", "-n"}, nil
	}
	return nil, skipError{"promtool is missing and apt-get cannot run (not root, no passwordless sudo): apt-get install prometheus"}
}

// install installs the package with its services forbidden to start
// (policy-rc.d), then stops any Prometheus server the install started all
// the same, so nothing is left listening.
func install(sudo []string) error {
	before := prometheusPIDs()
	undo, err := forbidServiceStarts(sudo)
	if err != nil {
		return err
	}
	defer undo()
	env := []string{"env", "DEBIAN_FRONTEND=noninteractive"}
	get := func(args ...string) error {
		argv := append(append(append([]string{}, sudo...), env...), append([]string{"apt-get", "-o", "DPkg::Lock::Timeout=300"}, args...)...) // other test packages may be installing at once
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out))
		}
		return nil
	}
	installArgs := []string{"install", "-y", "--no-install-recommends", aptPackage}
	if err := get(installArgs...); err != nil {
		if err := get("update"); err != nil {
			return err
		}
		if err := get(installArgs...); err != nil {
			return err
		}
	}
	return stopStarted(sudo, before)
}

// policyRCD is Debian's hook that invoke-rc.d and deb-systemd-invoke ask
// before starting a service; exit status 101 forbids it.
const policyRCD = "/usr/sbin/policy-rc.d"

// forbidServiceStarts installs a policy-rc.d that forbids starting services
// unless one is there already, and returns how to remove it again.
func forbidServiceStarts(sudo []string) (func(), error) {
	if _, err := os.Stat(policyRCD); err == nil {
		return func() {}, nil
	}
	script := "#!/bin/sh\n# installed by a cardvault test while it installs promtool\nexit 101\n"
	argv := append(append([]string{}, sudo...), "sh", "-c", `cat > "$0" && chmod 755 "$0"`, policyRCD)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("writing %s: %w\n%s", policyRCD, err, out)
	}
	return func() {
		argv := append(append([]string{}, sudo...), "rm", "-f", policyRCD)
		_ = exec.Command(argv[0], argv[1:]...).Run()
	}, nil
}

// stopStarted stops the Prometheus servers running now that were not
// running before the install (by their process id), and returns an error
// when one is still running after 10 s.
func stopStarted(sudo []string, before map[int]bool) error {
	var started []int
	for pid := range prometheusPIDs() {
		if !before[pid] {
			started = append(started, pid)
		}
	}
	for _, pid := range started {
		argv := append(append([]string{}, sudo...), "kill", strconv.Itoa(pid))
		_ = exec.Command(argv[0], argv[1:]...).Run()
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range started {
		for processExists(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the prometheus package started a server (pid %d) that does not stop", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// prometheusPIDs returns the ids of the processes named prometheus.
func prometheusPIDs() map[int]bool {
	pids := map[int]bool{}
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, f := range comms {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != "prometheus" {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			pids[pid] = true
		}
	}
	return pids
}

func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// tail returns the last lines of a command's output, for an error message.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// CheckMetrics runs `promtool check metrics` on an exposition and fails tb
// with promtool's findings when it reports any.
func CheckMetrics(tb testing.TB, exposition []byte) {
	tb.Helper()
	cmd := exec.Command(Promtool(tb), "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// CheckRules runs `promtool check rules` on a rules file and fails tb with
// promtool's findings when it reports any.
func CheckRules(tb testing.TB, path string) {
	tb.Helper()
	if out, err := exec.Command(Promtool(tb), "check", "rules", path).CombinedOutput(); err != nil {
		tb.Fatalf("promtool check rules %s: %v\n%s", path, err, out)
	}
}
