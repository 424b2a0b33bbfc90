// Package hacluster runs a local PostgreSQL high-availability cluster with
// pg_auto_failover: a monitor, a primary and synchronous standbys, each
// node a `pg_autoctl run` child process on a loopback port, its files
// under one folder, run as an unprivileged user when the caller is root
// (pglocal's account). `make ha` serves a vault against it; the HA test
// drives failovers through it (Switchover, KillPostmaster, FailDisk).
package hacluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

// Options say what cluster Start makes the first time; a cluster that
// already exists under the folder is started as it was made.
type Options struct {
	// Standbys is how many standbys follow the primary; 0 means 2, the
	// fewest with which pg_auto_failover keeps number_sync_standbys at 1
	// (a commit waits for one standby) and still fails over when one of
	// them is lost.
	Standbys int
	// Database is the database made on the primary; "cardvault" when "".
	Database string
	// Log gets one line per step; nil discards them. Each node's own
	// output goes to <Dir>/<node>.log.
	Log io.Writer
}

// Cluster is a running pg_auto_failover formation.
type Cluster struct {
	// Dir holds the nodes' files: the folder given to Start, or, as root
	// when the server account cannot reach it, the /tmp folder Note names.
	Dir  string
	Note string
	// Monitor is pg_auto_failover's monitor; Nodes are the data nodes,
	// node1 the first primary.
	Monitor *Node
	Nodes   []*Node

	layout layout
	tools  tools
	acct   pglocal.Account
	log    io.Writer
}

// Node is one PostgreSQL server of the cluster and its pg_autoctl keeper.
type Node struct {
	Name string
	Port int

	dir  string // <Cluster.Dir>/<Name>
	proc *process
}

// layout is what stays fixed across restarts, kept in <Dir>/cluster.json.
type layout struct {
	Database    string `json:"database"`
	MonitorPort int    `json:"monitor_port"`
	NodePorts   []int  `json:"node_ports"`
}

const (
	layoutFile = "cluster.json"
	socketDir  = "run" // every node's unix socket, under Dir
	// appUser is the database user the vault connects as.
	appUser = "postgres"
	// stopTimeout bounds a keeper's shutdown before it is killed.
	stopTimeout = 30 * time.Second
)

// ErrNotInstalled is returned by Start when pg_auto_failover is missing.
var ErrNotInstalled = errors.New("hacluster: pg_auto_failover is not installed (pg_autoctl and the pgautofailover " +
	"extension for the server's PostgreSQL version); `make ha-check` installs them, or: " +
	"apt-get install pg-auto-failover-cli postgresql-<version>-auto-failover")

// Start makes the cluster under dir the first time (monitor, then the
// primary, then the standbys, each on a free loopback port) or starts the
// one already there, and returns once its nodes run; WaitHealthy then
// waits for the primary and its standbys to be in sync. ctx bounds the
// making and starting, not the cluster's life: Stop ends it. It returns
// ErrNotInstalled without pg_auto_failover, and an error naming the node
// and the end of its log when a node fails to start.
func Start(ctx context.Context, dir string, o Options) (*Cluster, error) {
	t, err := findTools()
	if err != nil {
		return nil, err
	}
	acct, err := pglocal.ServerAccount()
	if err != nil {
		return nil, err
	}
	path, note, err := acct.PrepareDir(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: path, Note: note, tools: t, acct: acct, log: cmp.Or[io.Writer](o.Log, io.Discard)}
	if note != "" {
		c.logf("%s", note)
	}
	if err := c.loadOrPlan(o); err != nil {
		return nil, err
	}
	if err := c.mkdir(socketDir); err != nil {
		return nil, err
	}
	if err := c.startAll(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// loadOrPlan reads the layout of an existing cluster, or picks the ports
// of a new one and saves them.
func (c *Cluster) loadOrPlan(o Options) error {
	p := filepath.Join(c.Dir, layoutFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c.layout); err != nil {
			return fmt.Errorf("hacluster: %s: %w", p, err)
		}
	case errors.Is(err, os.ErrNotExist):
		if err := c.plan(o); err != nil {
			return err
		}
		b, _ = json.MarshalIndent(c.layout, "", "  ")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("hacluster: %w", err)
		}
	default:
		return fmt.Errorf("hacluster: %w", err)
	}
	c.nodes()
	return nil
}

// plan picks free loopback ports for the monitor and the data nodes.
func (c *Cluster) plan(o Options) error {
	c.layout.Database = cmp.Or(o.Database, "cardvault")
	n := 1 + cmp.Or(o.Standbys, 2)
	seen := map[int]bool{}
	for len(seen) < n+1 {
		port, err := e2e.FreePort()
		if err != nil {
			return fmt.Errorf("hacluster: no free port: %w", err)
		}
		if seen[port] {
			continue
		}
		seen[port] = true
		if c.layout.MonitorPort == 0 {
			c.layout.MonitorPort = port
		} else {
			c.layout.NodePorts = append(c.layout.NodePorts, port)
		}
	}
	return nil
}

// nodes fills Monitor and Nodes from the layout.
func (c *Cluster) nodes() {
	c.Monitor = &Node{Name: "monitor", Port: c.layout.MonitorPort, dir: filepath.Join(c.Dir, "monitor")}
	c.Nodes = nil
	for i, port := range c.layout.NodePorts {
		name := "node" + strconv.Itoa(i+1)
		c.Nodes = append(c.Nodes, &Node{Name: name, Port: port, dir: filepath.Join(c.Dir, name)})
	}
}

// Database returns the name of the database made on the primary.
func (c *Cluster) Database() string { return c.layout.Database }

// URL returns the connection URL for database name that names every data
// node and asks for the writable primary, e.g.
// postgres://postgres@127.0.0.1:5501,127.0.0.1:5502/cardvault?target_session_attrs=read-write&sslmode=disable.
// Trust authentication: no password.
func (c *Cluster) URL(name string) string {
	hosts := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(n.Port)
	}
	return fmt.Sprintf("postgres://%s@%s/%s?target_session_attrs=read-write&sslmode=disable",
		appUser, strings.Join(hosts, ","), url.PathEscape(name))
}

// URL returns a connection URL to this node alone, for database name.
func (n *Node) URL(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", appUser, n.Port, url.PathEscape(name))
}

// MonitorURL returns the monitor's URL (the pg_auto_failover database, as
// the autoctl_node user the data nodes use).
func (c *Cluster) MonitorURL() string {
	return fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", c.Monitor.Port)
}

// LogPath returns the file node n's pg_autoctl and PostgreSQL output goes to.
func (c *Cluster) LogPath(n *Node) string { return filepath.Join(c.Dir, n.Name+".log") }

// Stop ends every node, data nodes first and the monitor last, each with
// SIGTERM (pg_autoctl stops its PostgreSQL with a fast shutdown) and, past
// stopTimeout, SIGKILL to its process group. It is safe to call twice.
func (c *Cluster) Stop() {
	var data []*process
	for _, n := range c.Nodes {
		data = append(data, n.proc)
	}
	stopAll(data...)
	stopAll(c.Monitor.proc)
}

// mkdir creates <Dir>/name for the account.
func (c *Cluster) mkdir(name string) error {
	p := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(p, 0o700); err != nil {
		return fmt.Errorf("hacluster: %w", err)
	}
	return c.acct.Own(p)
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "hacluster: "+format+"\n", args...)
}

// StopNode stops node n's keeper and its PostgreSQL (a fast shutdown), as
// an operator taking the server down does; the monitor then sees it gone.
func (c *Cluster) StopNode(n *Node) { stopAll(n.proc) }

// StartNode starts node n's keeper again after StopNode; it rejoins as
// the monitor assigns (WaitHealthy waits for it). It returns an error when
// pg_autoctl cannot be started.
func (c *Cluster) StartNode(n *Node) error {
	p, err := c.spawn(n, "run", "--pgdata", n.pgdata())
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}
