package hacluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// process is a long-running pg_autoctl child.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
	err  error         // its exit status, once done is closed
}

// spawn starts pg_autoctl args for node n as the cluster's account, in its
// own process group (a Ctrl-C at the terminal reaches the Go program, which
// stops the nodes), with its output appended to the node's log. On Linux
// the kernel sends it SIGTERM if this program dies without stopping it.
func (c *Cluster) spawn(n *Node, args ...string) (*process, error) {
	logf, err := os.OpenFile(c.LogPath(n), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("hacluster: %w", err)
	}
	cmd := exec.Command(c.tools.autoctl, args...)
	cmd.Env, cmd.Dir = c.env(n), n.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr(c.acct.Credential())
	p := &process{name: n.Name, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the
		// child ends: this goroutine keeps its thread until the child exits.
		runtime.LockOSThread()
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("hacluster: starting pg_autoctl for %s: %w", n.Name, err)
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, <-started
}

// run runs pg_autoctl args for node n to its end as the cluster's account
// and returns its combined output, with an error naming the command when
// it fails or ctx ends first.
func (c *Cluster) run(ctx context.Context, n *Node, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.tools.autoctl, args...)
	return c.runCmd(cmd, n)
}

// runCmd runs cmd in node n's environment as the cluster's account.
func (c *Cluster) runCmd(cmd *exec.Cmd, n *Node) (string, error) {
	cmd.Env, cmd.Dir = c.env(n), n.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.acct.Credential()}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hacluster: %s %v for %s: %w\n%s", cmd.Path, cmd.Args[1:], n.Name, err, tail(out))
	}
	return string(out), nil
}

// stopAll sends SIGTERM to every running process, then waits for each
// and kills its process group past stopTimeout.
func stopAll(ps ...*process) {
	for _, p := range ps {
		if p != nil && p.running() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(stopTimeout)
	for _, p := range ps {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

// running reports whether the process has not exited.
func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tail returns the last 2 KiB of out.
func tail(out []byte) string {
	const n = 2 << 10
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(out)
}
