// Command hadev is `make ha`: it starts (or restarts) the local
// pg_auto_failover cluster under a folder of the project (a monitor, a
// primary and two synchronous standbys on loopback ports), prints how to
// reach and drive it, and runs `cardvault dev` against it until Ctrl-C,
// then stops the cluster.
//
//	go run ./cmd/cardvault/internal/hacluster/hadev [--dir .cardvault-ha] [--vault bin/cardvault] [-- dev flags…]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/hacluster"
)

// settleTimeout bounds the wait for a new cluster's standbys to sync.
const settleTimeout = 5 * time.Minute

func main() {
	dir := flag.String("dir", ".cardvault-ha", "where the cluster (pg/) and the dev vault's KEK (vault/) live")
	vault := flag.String("vault", "bin/cardvault", "the cardvault binary to run `dev` with")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir, *vault, flag.Args(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hadev:", err)
		os.Exit(1)
	}
}

// run starts the cluster, prints its addresses and serves a dev vault
// against it until ctx ends or the vault exits.
func run(ctx context.Context, dir, vault string, devArgs []string, out io.Writer) error {
	startCtx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	c, err := hacluster.Start(startCtx, filepath.Join(dir, "pg"), hacluster.Options{Log: os.Stderr})
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Fprintln(out, "waiting for the standbys to be in sync (a new cluster takes about half a minute)…")
	states, err := c.WaitHealthy(startCtx)
	if err != nil {
		return err
	}
	printCluster(out, c, states)
	return serveDev(ctx, vault, filepath.Join(dir, "vault"), c.URL(c.Database()), devArgs)
}

// printCluster tells where the monitor and the nodes are and how to watch
// and drive a failover.
func printCluster(out io.Writer, c *hacluster.Cluster, states []hacluster.NodeState) {
	fmt.Fprintf(out, "\npg_auto_failover cluster in %s (logs: <node>.log there)\n\n", c.Dir)
	fmt.Fprintf(out, "  monitor   %s\n", c.MonitorURL())
	for _, s := range states {
		fmt.Fprintf(out, "  %-9s postgres://postgres@127.0.0.1:%d/%s  %s\n", s.Name, s.Port, c.Database(), s.Reported)
	}
	fmt.Fprintf(out, "\nVAULT_DATABASE_URL='%s'\n\n", c.URL(c.Database()))
	fmt.Fprintf(out, "Watch it and fail it over from another shell:\n\n"+
		"  pg_autoctl show state --monitor '%[1]s'\n"+
		"  pg_autoctl perform switchover --monitor '%[1]s'\n\n", c.MonitorURL())
}

// serveDev runs `vault dev` on the cluster until it exits or ctx ends (then
// it gets SIGINT, as from Ctrl-C, and up to 30 s to stop).
func serveDev(ctx context.Context, vault, dir, dbURL string, args []string) error {
	// loopback unless args say otherwise (a later --listen wins)
	args = append([]string{"dev", "--dir", dir, "--database-url", dbURL, "--listen", "127.0.0.1:8080"}, args...)
	cmd := exec.CommandContext(ctx, vault, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil // stopped by Ctrl-C
	}
	return err
}
