// Package loop runs a process's background loops under one errgroup: each
// loop is named, ticks at its own interval, logs its failures and retries at
// the next tick, and stops when the group's context ends.
package loop

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
)

// Loop is one background loop: Run works until ctx ends.
type Loop struct {
	Name string
	Run  func(ctx context.Context)
}

// Every returns a Loop that calls tick at once and then every interval until
// ctx ends. A failure is logged with the loop's name (errors never carry card
// data) and the next tick tries again; a failure caused by ctx ending is not
// logged.
func Every(log *slog.Logger, name string, interval time.Duration, tick func(ctx context.Context) error) Loop {
	return Loop{Name: name, Run: func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := tick(ctx); err != nil && ctx.Err() == nil {
				log.Error("background loop failed", "loop", name, "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}}
}

// Start runs every loop in its own goroutine of one errgroup and returns
// stop, which cancels them all and waits until each has returned.
func Start(loops ...Loop) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var g errgroup.Group
	for _, l := range loops {
		g.Go(func() error { l.Run(ctx); return nil })
	}
	return func() { cancel(); _ = g.Wait() }
}
