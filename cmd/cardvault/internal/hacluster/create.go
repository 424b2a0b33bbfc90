package hacluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// settings are appended to postgresql.auto.conf of the monitor and the
// first primary (standbys copy it with their base backup); this file is
// read last, so they win over what pg_autoctl tunes for a machine of its
// own: four servers share this one. synchronous_commit stays on, its
// default: a commit returns once a standby has it (pg_auto_failover sets
// synchronous_standby_names).
func (c *Cluster) settings() string {
	return fmt.Sprintf(`
# cardvault local HA cluster (hacluster): several servers share one machine
unix_socket_directories = '%s'
shared_buffers = '128MB'
max_connections = 200
wal_keep_size = '512MB'
synchronous_commit = on
`, filepath.Join(c.Dir, socketDir))
}

// maxSocketPath is the longest unix socket path (sun_path is 108 bytes on
// Linux, with its terminating NUL).
const maxSocketPath = 107

// startAll starts the monitor, then the data nodes. A new first node is
// made and registered as the primary before the others are made, so that
// they join as its standbys; nodes made before all start at once, so that
// none is taken for lost while another starts.
func (c *Cluster) startAll(ctx context.Context) error {
	sock := filepath.Join(c.Dir, socketDir, ".s.PGSQL.65535")
	if len(sock) > maxSocketPath {
		return fmt.Errorf("hacluster: %s is too long for a unix socket path; use a shorter folder", sock)
	}
	if err := c.startMonitor(ctx); err != nil {
		return err
	}
	if first := c.Nodes[0]; !c.created(first) {
		if err := c.startNode(ctx, first); err != nil {
			return err
		}
		if err := c.waitRegistered(ctx, first); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if n.proc != nil {
			continue
		}
		if err := c.startNode(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// startMonitor makes the monitor unless it exists, starts it and waits
// until it answers.
func (c *Cluster) startMonitor(ctx context.Context) error {
	m := c.Monitor
	args := []string{"run", "--pgdata", m.pgdata()}
	if !c.created(m) {
		c.logf("making the monitor on 127.0.0.1:%d", m.Port)
		if err := c.initdb(ctx, m); err != nil {
			return err
		}
		args = []string{"create", "monitor", "--pgdata", m.pgdata(), "--pgport", strconv.Itoa(m.Port),
			"--pgctl", filepath.Join(c.tools.bin, "pg_ctl"), "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
			"--auth", "trust", "--no-ssl", "--run"}
	}
	var err error
	if m.proc, err = c.spawn(m, args...); err != nil {
		return err
	}
	return c.waitFor(ctx, m, "the monitor to answer", func(ctx context.Context) bool {
		_, err := c.states(ctx)
		return err == nil
	})
}

// startNode makes data node n unless it exists (the first one on a data
// directory of ours, the others from a base backup of the primary), and
// starts it.
func (c *Cluster) startNode(ctx context.Context, n *Node) error {
	args := []string{"run", "--pgdata", n.pgdata()}
	if !c.created(n) {
		if err := c.mkdir(n.Name); err != nil {
			return err
		}
		if n == c.Nodes[0] {
			c.logf("making %s, the first primary, on 127.0.0.1:%d", n.Name, n.Port)
			if err := c.initdb(ctx, n); err != nil {
				return err
			}
		} else {
			c.logf("making %s, a standby, on 127.0.0.1:%d", n.Name, n.Port)
		}
		args = []string{"create", "postgres", "--pgdata", n.pgdata(), "--pgport", strconv.Itoa(n.Port),
			"--pgctl", filepath.Join(c.tools.bin, "pg_ctl"), "--listen", "127.0.0.1", "--hostname", "127.0.0.1",
			"--auth", "trust", "--no-ssl", "--monitor", c.MonitorURL(), "--dbname", c.layout.Database,
			"--name", n.Name, "--run"}
	}
	var err error
	n.proc, err = c.spawn(n, args...)
	return err
}

// initdb makes node n's data directory (trust, UTF8, C locale) and appends
// the cluster's settings.
func (c *Cluster) initdb(ctx context.Context, n *Node) error {
	if err := c.mkdir(n.Name); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.tools.bin, "initdb"), "-D", n.pgdata(), "-U", appUser,
		"--auth=trust", "-E", "UTF8", "--locale=C")
	if _, err := c.runCmd(cmd, n); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(n.pgdata(), "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("hacluster: %w", err)
	}
	defer f.Close()
	_, err = f.WriteString(c.settings())
	return err
}

// waitRegistered waits until node n is known to the monitor as running
// PostgreSQL, as a single node or a primary.
func (c *Cluster) waitRegistered(ctx context.Context, n *Node) error {
	return c.waitFor(ctx, n, n.Name+" to run as the primary", func(ctx context.Context) bool {
		states, err := c.states(ctx)
		if err != nil {
			return false
		}
		for _, s := range states {
			if s.Name == n.Name && s.writable() {
				return true
			}
		}
		return false
	})
}

// pollInterval is how often the cluster's state is polled.
const pollInterval = 200 * time.Millisecond

// waitFor polls ok until it reports true, ctx ends, or the keeper of node n
// exits; the error then names what was awaited and quotes n's log.
func (c *Cluster) waitFor(ctx context.Context, n *Node, what string, ok func(context.Context) bool) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		done := ok(pctx)
		cancel()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hacluster: waiting for %s: %w\n%s", what, ctx.Err(), c.logTail(n))
		case <-n.proc.done:
			return fmt.Errorf("hacluster: pg_autoctl of %s exited (%v) while waiting for %s\n%s", n.Name, n.proc.err, what, c.logTail(n))
		case <-t.C:
		}
	}
}

// logTail returns the end of node n's log.
func (c *Cluster) logTail(n *Node) string {
	b, err := os.ReadFile(c.LogPath(n))
	if err != nil {
		return err.Error()
	}
	return tail(b)
}
