package hacluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// NodeState is what the monitor knows of a data node.
type NodeState struct {
	Name     string
	Port     int
	Reported string // the state the node's keeper last reported
	Goal     string // the state the monitor assigned it
	Healthy  bool   // the monitor's last health check reached it
	LSN      string
}

// settled reports whether the node has reached its assigned state state.
func (s NodeState) settled(state string) bool { return s.Reported == state && s.Goal == state }

// writable reports whether the node runs as the one writable server.
func (s NodeState) writable() bool {
	return s.settled("single") || s.settled("wait_primary") || s.settled("primary")
}

// String renders the state as `pg_autoctl show state` does, on one line.
func (s NodeState) String() string {
	return fmt.Sprintf("%s(:%d) %s→%s", s.Name, s.Port, s.Reported, s.Goal)
}

// States returns every data node's state as the monitor sees it, or an
// error when the monitor cannot be asked.
func (c *Cluster) States(ctx context.Context) ([]NodeState, error) { return c.states(ctx) }

func (c *Cluster) states(ctx context.Context) ([]NodeState, error) {
	conn, err := pgx.Connect(ctx, c.MonitorURL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT nodename, nodeport, reportedstate::text, goalstate::text, health = 1, reportedlsn::text
		FROM pgautofailover.node ORDER BY nodeid`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeState, error) {
		var s NodeState
		return s, r.Scan(&s.Name, &s.Port, &s.Reported, &s.Goal, &s.Healthy, &s.LSN)
	})
}

// NumberSyncStandbys returns the formation's number_sync_standbys: how
// many standbys must have a commit before it returns.
func (c *Cluster) NumberSyncStandbys(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, c.MonitorURL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT number_sync_standbys FROM pgautofailover.formation WHERE formationid = 'default'`).Scan(&n)
	return n, err
}

// Primary returns the data node the monitor has settled as the primary,
// or an error when there is none (during a failover).
func (c *Cluster) Primary(ctx context.Context) (*Node, error) {
	states, err := c.states(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if s.writable() {
			return c.node(s.Name)
		}
	}
	return nil, fmt.Errorf("hacluster: no primary now: %s", render(states))
}

// node returns the data node called name.
func (c *Cluster) node(name string) (*Node, error) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("hacluster: the monitor names an unknown node %q", name)
}

// checkpointEvery is how often WaitHealthy asks the primary for an
// immediate checkpoint while a standby is being (re)built: pg_basebackup
// otherwise waits for a spread checkpoint, more than a minute.
const checkpointEvery = 2 * time.Second

// WaitHealthy waits until one data node is the primary and every other one
// a secondary in sync with it, and the formation makes commits wait for a
// standby when it has two or more (number_sync_standbys ≥ 1). It returns
// the states then, or an error quoting the last states when ctx ends first.
func (c *Cluster) WaitHealthy(ctx context.Context) ([]NodeState, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last []NodeState
	var nudged time.Time
	for {
		states, err := c.states(ctx)
		if err == nil {
			last = states
			if c.healthy(ctx, states) {
				return states, nil
			}
			if time.Since(nudged) > checkpointEvery {
				c.nudgeCheckpoint(ctx, states)
				nudged = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("hacluster: the cluster did not settle: %w; last states: %s", ctx.Err(), render(last))
		case <-t.C:
		}
	}
}

// healthy reports one primary, every other node a secondary, all of them
// known, and synchronous commits set up as Options asked.
func (c *Cluster) healthy(ctx context.Context, states []NodeState) bool {
	if len(states) != len(c.Nodes) {
		return false
	}
	primaries := 0
	for _, s := range states {
		switch {
		case s.settled("primary"):
			primaries++
		case !s.settled("secondary"):
			return false
		}
	}
	if primaries != 1 {
		return false
	}
	if len(c.Nodes) < 3 {
		return true
	}
	n, err := c.NumberSyncStandbys(ctx)
	return err == nil && n >= 1
}

// nudgeCheckpoint asks the writable node for an immediate checkpoint,
// which also ends one in progress at once, so that a base backup waiting
// for it starts.
func (c *Cluster) nudgeCheckpoint(ctx context.Context, states []NodeState) {
	for _, s := range states {
		if !s.writable() {
			continue
		}
		n, err := c.node(s.Name)
		if err != nil {
			return
		}
		conn, err := pgx.Connect(ctx, n.URL("postgres"))
		if err != nil {
			return
		}
		_, _ = conn.Exec(ctx, "CHECKPOINT")
		conn.Close(context.Background())
		return
	}
}

// render joins states for a message.
func render(states []NodeState) string {
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}
