package hacluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Switchover asks the monitor for a planned switchover with
// `pg_autoctl perform switchover`: the primary drains and becomes a
// standby, and the most advanced standby is promoted. It returns once the
// monitor reports it done (pg_autoctl waits up to 60 s), or an error
// quoting pg_autoctl.
func (c *Cluster) Switchover(ctx context.Context) error {
	_, err := c.run(ctx, c.Monitor, "perform", "switchover", "--pgdata", c.Monitor.pgdata())
	return err
}

// Events returns the monitor's last n events (`pg_autoctl show events`),
// or the error's text, for a report.
func (c *Cluster) Events(ctx context.Context, n int) string {
	out, err := c.run(ctx, c.Monitor, "show", "events", "--count", strconv.Itoa(n), "--pgdata", c.Monitor.pgdata())
	if err != nil {
		return err.Error()
	}
	return out
}

// KillPostmaster sends SIGKILL to node n's postmaster, as a crash of the
// server process would: its backends lose their connections, its keeper
// sees PostgreSQL gone. It returns the pid killed, or an error when the
// node runs no postmaster.
func (c *Cluster) KillPostmaster(n *Node) (int, error) {
	pid, err := postmasterPID(n)
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("hacluster: SIGKILL to the postmaster of %s (pid %d): %w", n.Name, pid, err)
	}
	return pid, nil
}

// postmasterPID reads the pid on the first line of n's postmaster.pid.
func postmasterPID(n *Node) (int, error) {
	b, err := os.ReadFile(filepath.Join(n.pgdata(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("hacluster: %s runs no postmaster: %w", n.Name, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// FailDisk makes node n's disk fail: the node's folder, which holds its
// data directory and its keeper's state and configuration (as
// /var/lib/postgresql, the postgres account's home, does on Debian), loses
// its owner's write permission on every file and folder, so PostgreSQL and
// pg_autoctl, running as that unprivileged owner, can no longer open a file
// for writing (PostgreSQL opens its files read-write, so no new connection
// or newly read table works either). Then it asks PostgreSQL for a
// checkpoint over a connection opened before, whose writes fail: the
// server panics and cannot start again, as on the first failed write to a
// dying disk. Files already open stay writable until then, which no chmod
// can take away: without the checkpoint, PostgreSQL notices only at its
// next checkpoint (checkpoint_timeout, 5 min by default) and
// pg_auto_failover, whose health check only connects, not at all (see
// docs/operations.md). The keeper keeps running and reporting to the
// monitor, but cannot record a new state, so it keeps reporting the one
// it had. It returns an error when n cannot be reached before, a
// permission cannot be changed, or the postmaster survives the checkpoint
// (the fault did not take).
func (c *Cluster) FailDisk(ctx context.Context, n *Node) error {
	pid, err := postmasterPID(n)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, n.URL("postgres"))
	if err != nil {
		return fmt.Errorf("hacluster: connecting to %s before its disk fails: %w", n.Name, err)
	}
	defer conn.Close(context.Background())
	if err := chmodTree(n.dir, 0, 0o200); err != nil {
		return err
	}
	_, _ = conn.Exec(ctx, "CHECKPOINT") // fails: that is the point
	return awaitExit(ctx, pid, fmt.Sprintf("%s's postmaster (pid %d) after its checkpoint failed", n.Name, pid))
}

// awaitExit waits up to diskPanicWithin for process pid to be gone, and
// returns an error naming what otherwise.
func awaitExit(ctx context.Context, pid int, what string) error {
	ctx, cancel := context.WithTimeout(ctx, diskPanicWithin)
	defer cancel()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for syscall.Kill(pid, 0) == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("hacluster: %s still runs after %s: the disk fault did not take", what, diskPanicWithin)
		case <-t.C:
		}
	}
	return nil
}

// diskPanicWithin bounds the wait for a server to panic on its failed disk.
const diskPanicWithin = 15 * time.Second

// RepairDisk gives node n's folder its write permissions back (a replaced
// disk): its keeper then rebuilds the node as a standby of the new
// primary. It returns an error when a permission cannot be changed.
func (c *Cluster) RepairDisk(n *Node) error { return chmodTree(n.dir, 0o200, 0) }

// chmodTree adds the permission bits add and removes clear on every file
// and folder under root (symbolic links left alone; a file PostgreSQL
// removes meanwhile is skipped).
func chmodTree(root string, add, clear fs.FileMode) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			var fi fs.FileInfo
			if fi, err = d.Info(); err == nil {
				err = os.Chmod(p, (fi.Mode().Perm()|add)&^clear)
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("hacluster: changing permissions under %s: %w", root, err)
	}
	return nil
}
