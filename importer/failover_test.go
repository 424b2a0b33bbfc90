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

// lostClaims is the real queue whose first fail claims take their items
// and then fail as a claim does whose answer was lost in a failover: the
// items are leased to the worker, which does not know it.
type lostClaims struct {
	vault.ImportQueue
	fail atomic.Int32
	lost atomic.Int32 // items so leased
}

func (l *lostClaims) ClaimItems(ctx context.Context, owner string, n int, ttl time.Duration) ([]vault.ItemWork, error) {
	items, err := l.ImportQueue.ClaimItems(ctx, owner, n, ttl)
	if err == nil && len(items) > 0 && l.fail.Add(-1) >= 0 {
		l.lost.Add(int32(len(items)))
		return nil, &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable, Message: "connection lost"}
	}
	return items, err
}

// TestItemsOfAClaimWhoseAnswerWasLostAreForwardedOnce: the worker's
// heartbeat renews only the items it knows it holds, so the lease of a
// claim whose answer was lost runs out and the items are claimed again;
// the job finishes, each item forwarded once.
func TestItemsOfAClaimWhoseAnswerWasLostAreForwardedOnce(t *testing.T) {
	const items = 40
	w := newWorld(t, stripesim.SeedSpec{Customers: 5, PaymentMethods: items, Seed: 10})
	q := &lostClaims{ImportQueue: w.svc}
	q.fail.Store(2)
	w.runner("replica-a", func(c *importer.Config) { c.Service = q })

	got := w.await(w.start().ID, 30*time.Second)

	require.Equal(t, "finished", got.Status)
	require.Positive(t, q.lost.Load(), "claims lost their answer")
	require.Equal(t, int64(items), got.Counts.Attempts, "one attempt per item")
	for pm, n := range w.sim.Stats().ForwardsByPM {
		require.Equal(t, 1, n, "forwards of %s", pm)
	}
	w.requireExactlyImported()
}
