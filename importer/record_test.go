package importer_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
)

// holdRecords makes the writes of owner's attempts (the updates that count
// an attempt on an item it leases) wait while the returned release has not
// been called, through a trigger on import_items and an advisory lock held
// by the test.
func (w *world) holdRecords(owner string) (release func()) {
	w.t.Helper()
	ctx := context.Background()
	pool := w.pool()
	_, err := pool.Exec(ctx, `
		CREATE OR REPLACE FUNCTION test_hold_records() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
		DROP TRIGGER IF EXISTS test_hold_records ON import_items;
		CREATE TRIGGER test_hold_records BEFORE UPDATE ON import_items FOR EACH ROW
		WHEN (OLD.lease_owner = '`+owner+`' AND NEW.attempts > OLD.attempts) EXECUTE FUNCTION test_hold_records()`)
	require.NoError(w.t, err)
	w.t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), `DROP TRIGGER IF EXISTS test_hold_records ON import_items`)
		require.NoError(w.t, err)
	})
	conn, err := pool.Acquire(ctx)
	require.NoError(w.t, err)
	_, err = conn.Exec(ctx, `SELECT pg_advisory_lock(4242)`)
	require.NoError(w.t, err)
	var once bool
	release = func() {
		if !once {
			once = true
			_, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock(4242)`)
			require.NoError(w.t, err)
			conn.Release()
		}
	}
	w.t.Cleanup(release)
	return release
}

// awaitForwards polls until the simulator has made at least n forwards.
func (w *world) awaitForwards(n int) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.sim.Stats().Forwards < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("only %d of %d forwards", w.sim.Stats().Forwards, n)
		}
		time.Sleep(10 * time.Millisecond) // polling an external state with a deadline
	}
}

func TestForwardersGoOnWhileTheirAttemptsCommitAndAStopWaitsForThem(t *testing.T) {
	const concurrency, owner = 4, "held-records"
	ctx := context.Background()
	w := newWorld(t, stripesim.SeedSpec{Customers: 20, PaymentMethods: 200, Seed: 10})
	release := w.holdRecords(owner)
	stop := w.runner(owner, func(c *importer.Config) { c.Concurrency = concurrency })
	job := w.start()
	t.Cleanup(func() { // a running job left behind would be claimed by later tests' runners
		w.do(http.MethodPost, "/tokens/imports/"+job.ID.String()+"/abort", nil, nil)
	})

	// No attempt can commit, yet each forwarder went on to a second item.
	w.awaitForwards(2 * concurrency)
	stopped := make(chan struct{})
	go func() { defer close(stopped); stop() }()
	release()
	<-stopped

	var attempts, leased int64
	require.NoError(t, w.pool().QueryRow(ctx, `SELECT coalesce(sum(attempts), 0), count(*) FILTER (WHERE lease_owner IS NOT NULL)
		FROM import_items WHERE job_id = $1`, job.ID.String()).Scan(&attempts, &leased))
	require.GreaterOrEqual(t, attempts, int64(concurrency), "the attempts waiting to commit at the stop were written")
	require.Zero(t, leased, "every lease was given back")
}
