package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// childSettings are what the vault child is configured with beyond the
// bench options.
type childSettings struct {
	dbURL, kekURI, stripeBase string
}

// vaultChild is the `cardvault serve` process under measurement.
type vaultChild struct {
	cmd       *exec.Cmd
	baseURL   string
	debugAddr string // the pprof listener, "" unless profiling
	logPath   string
	done      chan struct{} // closed when the process has exited
	waitErr   error

	stopSampling chan struct{}
	sampled      sync.WaitGroup
	phasePeakKB  atomic.Int64 // the highest VmRSS sampled since resetPeak
	stopOnce     sync.Once
}

// childEnvPrefix is the prefix of the variables a vault reads: the
// parent's are dropped, so that only the bench's settings configure it.
const childEnvPrefix = "VAULT_"

// startVaultChild runs `cardvault serve` on a free loopback port and waits
// until it is ready. The child is configured only through its environment:
// the bench's database and KEK, imports unthrottled against the simulator,
// no per-key rate limit, and an in-flight cap above what the bench sends.
// On error the returned child (if not nil) still needs stop.
func startVaultChild(ctx context.Context, o benchOptions, s childSettings) (*vaultChild, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &vaultChild{baseURL: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}),
		stopSampling: make(chan struct{}), logPath: filepath.Join(o.Out, "vault.log")}
	env := []string{
		"VAULT_DATABASE_URL=" + s.dbURL,
		"VAULT_KEK_URI=" + s.kekURI,
		"VAULT_LISTEN=127.0.0.1:" + strconv.Itoa(port),
		"VAULT_PUBLIC_URL=" + c.baseURL,
		"VAULT_STRIPE_API_BASE=" + s.stripeBase,
		"VAULT_IMPORT_RATE=0",
		"VAULT_IMPORT_CONCURRENCY=" + strconv.Itoa(o.ImportConcurrency),
		"VAULT_RATE_LIMIT=0", // the per-key limit would measure the limiter, not the vault
		"VAULT_MAX_INFLIGHT=" + strconv.Itoa(max(256, 2*o.Concurrency+o.ImportConcurrency)),
		"VAULT_LOG_LEVEL=info",
	}
	if o.Profile {
		dport, err := freePort()
		if err != nil {
			return nil, err
		}
		c.debugAddr = "127.0.0.1:" + strconv.Itoa(dport)
		env = append(env, "VAULT_DEBUG_LISTEN="+c.debugAddr)
	}
	if c.cmd, err = childCommand(o); err != nil {
		return nil, err
	}
	c.cmd.Env = append(append(parentEnv(), c.cmd.Env...), env...)
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	setChildAttr(c.cmd)
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

// childCommand returns o's child command, or this executable's `serve`.
func childCommand(o benchOptions) (*exec.Cmd, error) {
	if o.childCommand != nil {
		return o.childCommand()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(self, "serve"), nil
}

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

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200, the child exits, ctx ends
// or timeout passes.
func (c *vaultChild) waitReady(ctx context.Context, timeout time.Duration) error {
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

// stop sends SIGTERM, waits for the graceful shutdown and kills the child
// if it takes longer than the vault's own grace period.
func (c *vaultChild) stop() {
	c.stopOnce.Do(func() {
		close(c.stopSampling)
		c.sampled.Wait()
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(shutdownGrace + 5*time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// sampleRSS records the child's resident set size every 50 ms.
func (c *vaultChild) sampleRSS() {
	defer c.sampled.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if kb, err := procMemKB(c.cmd.Process.Pid, "VmRSS"); err == nil {
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

// resetPeak returns the highest RSS sampled since the last call, in MB, and
// starts a new sampling window at the current RSS.
func (c *vaultChild) resetPeak() float64 {
	kb, _ := procMemKB(c.cmd.Process.Pid, "VmRSS")
	return float64(c.phasePeakKB.Swap(kb)) / 1024
}

// peakRSS returns the kernel's high-water mark of the child's RSS (VmHWM)
// in MB.
func (c *vaultChild) peakRSS() (float64, error) {
	kb, err := procMemKB(c.cmd.Process.Pid, "VmHWM")
	return float64(kb) / 1024, err
}

// cpuSeconds returns the child's user+system CPU time so far.
func (c *vaultChild) cpuSeconds() (float64, error) {
	select {
	case <-c.done:
		return 0, errors.New("the vault has exited")
	default:
	}
	return procCPUSeconds(c.cmd.Process.Pid)
}
