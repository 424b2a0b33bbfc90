// Package e2e runs the real cardvault binary end to end: a supervisor that
// starts `cardvault serve` as a child process, waits until it is ready,
// signals, stops or kills it and reads its CPU time and resident memory from
// /proc, and a load generator that drives requests at a bounded concurrency
// and reports their latencies and errors. `cardvault bench`, the fault tests
// and the soak test share it.
package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// VaultOptions say how to run a vault child.
type VaultOptions struct {
	// Command runs `cardvault serve` (not yet started). Its Env is kept, after
	// this process's environment without VAULT_* variables and before the
	// defaults and Env.
	Command *exec.Cmd
	// Env are the child's VAULT_* settings. They override the defaults:
	// VAULT_LISTEN=127.0.0.1:0 (a free loopback port; the child's "serving"
	// log line names it), VAULT_LOG_LEVEL=info (that line is at info) and
	// VAULT_RATE_LIMIT=0 (one API key drives all the load). VAULT_PUBLIC_URL
	// is then the child's own address, serve's default.
	Env []string
	// LogPath is the file the child's stdout and stderr go to, directly:
	// reading the log costs the measured process nothing.
	LogPath string
	// ParentDeathSignal is what the kernel sends the child when this process
	// dies (Linux); 0 means SIGKILL.
	ParentDeathSignal syscall.Signal
	// StopGrace is how long Stop waits after SIGTERM before it kills.
	StopGrace time.Duration
	// ReadyTimeout bounds the wait for readiness; 0 means a minute.
	ReadyTimeout time.Duration
	// TLSRootFile, when set, says the child serves HTTPS (its Env sets
	// VAULT_TLS_CERT and VAULT_TLS_KEY) with a certificate of this PEM
	// file: URL is https and readiness is polled trusting only that file.
	TLSRootFile string
}

// Vault is a `cardvault serve` child process.
type Vault struct {
	cmd     *exec.Cmd
	addr    string // host:port, known once the child logged it
	logPath string
	grace   time.Duration
	tlsRoot string        // the PEM file of the child's HTTPS certificate; "" for HTTP
	done    chan struct{} // closed when the process has exited
	waitErr error

	stopSampling chan struct{}
	sampled      sync.WaitGroup
	phasePeakKB  atomic.Int64 // the highest VmRSS sampled since ResetPeakRSS
	stopOnce     sync.Once
}

// childEnvPrefix is the prefix of the variables a vault reads: the
// parent's are dropped, so that only VaultOptions configure it.
const childEnvPrefix = "VAULT_"

// childDefaults are the settings Env may override.
var childDefaults = []string{"VAULT_LISTEN=127.0.0.1:0", "VAULT_LOG_LEVEL=info", "VAULT_RATE_LIMIT=0"}

// StartVault runs o.Command and waits until it answers GET /readyz with 200.
// The child is configured only through its environment. It returns an
// error, with the end of the child's log, when the child cannot start,
// exits first, or is not ready within o.ReadyTimeout; on error the
// returned child (if not nil) still needs Stop or Kill.
func StartVault(ctx context.Context, o VaultOptions) (*Vault, error) {
	c := &Vault{cmd: o.Command, done: make(chan struct{}), stopSampling: make(chan struct{}),
		logPath: o.LogPath, grace: o.StopGrace, tlsRoot: o.TLSRootFile}
	c.cmd.Env = append(append(append(parentEnv(), c.cmd.Env...), childDefaults...), o.Env...)
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	setParentDeathSignal(c.cmd, cmp.Or(o.ParentDeathSignal, syscall.SIGKILL))
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
	return c, c.waitReady(ctx, cmp.Or(o.ReadyTimeout, time.Minute))
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

// waitReady finds the listening address in the child's log, then polls
// /readyz until it answers 200, the child exits, ctx ends or timeout
// passes.
func (c *Vault) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	if c.tlsRoot != "" {
		cfg, err := trustedTLS(c.tlsRoot)
		if err != nil {
			return err
		}
		client.Transport = &http.Transport{TLSClientConfig: cfg}
	}
	for {
		if c.addr == "" {
			c.addr = servingAddr(c.logPath)
		}
		if c.addr != "" && c.ready(client) {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("the vault exited before it was ready (%v); the end of %s:\n%s", c.waitErr, c.logPath, c.LogTail(2048))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the vault was not ready within %s; the end of %s:\n%s", timeout, c.logPath, c.LogTail(2048))
		}
	}
}

// ready reports whether GET /readyz answers 200.
func (c *Vault) ready(client *http.Client) bool {
	resp, err := client.Get(c.URL() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// servingAddr returns the address of the "serving" line in the log at
// path, or "" while there is none. The line comes before any access-log
// line, so the file is still short.
func servingAddr(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"msg":"serving"`)) {
			continue
		}
		var rec struct {
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			return rec.Addr
		}
	}
	return ""
}

// Addr returns the child's listening address, host:port.
func (c *Vault) Addr() string { return c.addr }

// URL returns the child's base URL, http://<addr>, or https://<addr> when
// it serves HTTPS.
func (c *Vault) URL() string {
	if c.tlsRoot != "" {
		return "https://" + c.addr
	}
	return "http://" + c.addr
}

// PID returns the child's process id.
func (c *Vault) PID() int { return c.cmd.Process.Pid }

// Exited is closed once the child has exited.
func (c *Vault) Exited() <-chan struct{} { return c.done }

// LogTail returns the last n bytes of the child's log, or why it cannot be
// read.
func (c *Vault) LogTail(n int64) string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Signal sends sig to the child and returns the error of the sending.
func (c *Vault) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Wait waits up to within for the child to exit and returns its exit code
// (-1 when a signal ended it), or an error when it is still running.
func (c *Vault) Wait(within time.Duration) (int, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		select {
		case <-c.done:
		default:
			return -1, fmt.Errorf("the vault did not exit within %s", within)
		}
	}
	return c.cmd.ProcessState.ExitCode(), nil
}

// Kill sends SIGKILL unless the child has exited, and waits for it.
func (c *Vault) Kill() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
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
			c.Kill()
		}
	})
}

// sampleRSS records the child's resident set size every 50 ms.
func (c *Vault) sampleRSS() {
	defer c.sampled.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if kb, err := MemKB(c.PID(), "VmRSS"); err == nil {
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

// ResetPeakRSS returns the highest RSS sampled (every 50 ms) since the last
// call, in MB, and starts a new sampling window at the current RSS.
func (c *Vault) ResetPeakRSS() float64 {
	kb, _ := MemKB(c.PID(), "VmRSS")
	return float64(c.phasePeakKB.Swap(kb)) / 1024
}

// RSSKB returns the child's resident set size (VmRSS) in kB, or an error
// once it has exited.
func (c *Vault) RSSKB() (int64, error) { return MemKB(c.PID(), "VmRSS") }

// PeakRSS returns the kernel's high-water mark of the child's RSS (VmHWM)
// in MB, or an error when it cannot be read.
func (c *Vault) PeakRSS() (float64, error) {
	kb, err := MemKB(c.PID(), "VmHWM")
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
	return CPUSeconds(c.PID())
}
