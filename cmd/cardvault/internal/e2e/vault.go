// Package e2e runs the real cardvault binary end to end: a supervisor that
// starts `cardvault serve` as a child process, waits until it is ready,
// signals, stops or kills it and reads its CPU time and resident memory from
// /proc, and a load generator that drives requests at a bounded concurrency
// and reports their latencies and errors. `cardvault bench`, the fault tests
// and the soak test share it.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options say how to run a vault child.
type Options struct {
	// Command runs `cardvault serve` (not yet started). Its Env is kept, after
	// this process's environment without VAULT_* variables and before Env.
	Command *exec.Cmd
	// Env are the child's VAULT_* settings; Start adds VAULT_LISTEN and
	// VAULT_PUBLIC_URL.
	Env []string
	// LogPath is the file the child's stdout and stderr go to.
	LogPath string
	// StopGrace is how long Stop waits after SIGTERM before it kills.
	StopGrace time.Duration
}

// Vault is a `cardvault serve` child process.
type Vault struct {
	cmd     *exec.Cmd
	baseURL string
	logPath string
	grace   time.Duration
	done    chan struct{} // closed when the process has exited
	waitErr error

	stopSampling chan struct{}
	sampled      sync.WaitGroup
	phasePeakKB  atomic.Int64 // the highest VmRSS sampled since ResetPeakRSS
	stopOnce     sync.Once
}

// childEnvPrefix is the prefix of the variables a vault reads: the
// parent's are dropped, so that only Options configure it.
const childEnvPrefix = "VAULT_"

// Start runs o.Command on a free loopback port and waits until it is ready.
// The child is configured only through its environment. It returns an
// error when the child cannot start or is not ready within a minute; on
// error the returned child (if not nil) still needs Stop.
func Start(ctx context.Context, o Options) (*Vault, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	c := &Vault{cmd: o.Command, baseURL: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}),
		stopSampling: make(chan struct{}), logPath: o.LogPath, grace: o.StopGrace}
	env := append([]string{"VAULT_LISTEN=127.0.0.1:" + strconv.Itoa(port), "VAULT_PUBLIC_URL=" + c.baseURL}, o.Env...)
	c.cmd.Env = append(append(parentEnv(), c.cmd.Env...), env...)
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	setParentDeathSignal(c.cmd, syscall.SIGTERM)
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that started the
		// child ends: keep this goroutine on its thread until the child exits.
		runtime.LockOSThread()
		defer logf.Close()
		if err := c.cmd.Start(); err != nil {
			started <- fmt.Errorf("starting the vault: %w", err)
			return
		}
		started <- nil
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	c.sampled.Add(1)
	go c.sampleRSS()
	return c, c.waitReady(ctx, 60*time.Second)
}

// URL returns the child's base URL, http://127.0.0.1:<port>.
func (c *Vault) URL() string { return c.baseURL }

// parentEnv returns this process's environment without VAULT_* variables.
func parentEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, childEnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, or
// an error when no port can be had.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200, the child exits, ctx ends
// or timeout passes.
func (c *Vault) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(c.baseURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("the vault exited before it was ready (%v); see %s", c.waitErr, c.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the vault was not ready within %s; see %s", timeout, c.logPath)
		}
	}
}

// Stop sends SIGTERM, waits for the graceful shutdown and kills the child
// if it takes longer than StopGrace.
func (c *Vault) Stop() {
	c.stopOnce.Do(func() {
		close(c.stopSampling)
		c.sampled.Wait()
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(c.grace):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// sampleRSS records the child's resident set size every 50 ms.
func (c *Vault) sampleRSS() {
	defer c.sampled.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if kb, err := MemKB(c.cmd.Process.Pid, "VmRSS"); err == nil {
			for {
				cur := c.phasePeakKB.Load()
				if kb <= cur || c.phasePeakKB.CompareAndSwap(cur, kb) {
					break
				}
			}
		}
		select {
		case <-c.stopSampling:
			return
		case <-c.done:
			return
		case <-t.C:
		}
	}
}

// ResetPeakRSS returns the highest RSS sampled since the last call, in MB,
// and starts a new sampling window at the current RSS.
func (c *Vault) ResetPeakRSS() float64 {
	kb, _ := MemKB(c.cmd.Process.Pid, "VmRSS")
	return float64(c.phasePeakKB.Swap(kb)) / 1024
}

// PeakRSS returns the kernel's high-water mark of the child's RSS (VmHWM)
// in MB, or an error when it cannot be read.
func (c *Vault) PeakRSS() (float64, error) {
	kb, err := MemKB(c.cmd.Process.Pid, "VmHWM")
	return float64(kb) / 1024, err
}

// CPUSeconds returns the child's user+system CPU time so far, or an error
// once it has exited.
func (c *Vault) CPUSeconds() (float64, error) {
	select {
	case <-c.done:
		return 0, errors.New("the vault has exited")
	default:
	}
	return CPUSeconds(c.cmd.Process.Pid)
}
