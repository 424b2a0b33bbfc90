package importer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault"
)

// failingAttempts is the real queue whose first fail attempts to record a
// forward fail as a database failing over does (unavailable).
type failingAttempts struct {
	vault.ImportQueue
	fail atomic.Int32
}

func (f *failingAttempts) RecordAttempt(ctx context.Context, owner string, w vault.ItemWork, at vault.Attempt) error {
	if f.fail.Add(-1) >= 0 {
		return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable, Message: "failing over"}
	}
	return f.ImportQueue.RecordAttempt(ctx, owner, w, at)
}

// TestForwardsMadeWhileTheDatabaseFailsOverAreRecordedOnce: a forward
// whose outcome cannot be written while the database fails over is
// written once it answers again, so the item is neither left leased to a
// worker that forgot it (the job would never finish) nor forwarded twice.
func TestForwardsMadeWhileTheDatabaseFailsOverAreRecordedOnce(t *testing.T) {
	const items = 40
	w := newWorld(t, stripesim.SeedSpec{Customers: 5, PaymentMethods: items, Seed: 9})
	q := &failingAttempts{ImportQueue: w.svc}
	q.fail.Store(12)
	w.runner("replica-a", func(c *importer.Config) { c.Service = q })

	got := w.await(w.start().ID, 30*time.Second)

	require.Equal(t, "finished", got.Status)
	require.Less(t, q.fail.Load(), int32(0), "records failed and were retried")
	require.Equal(t, int64(items), got.Counts.Successes)
	require.Equal(t, int64(items), got.Counts.Attempts, "one attempt per item")
	for pm, n := range w.sim.Stats().ForwardsByPM {
		require.Equal(t, 1, n, "forwards of %s", pm)
	}
	w.requireExactlyImported()
}
