package postgres_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres"
)

// TestKeyJobBatchesWalkOnFromTheirCursor: a batch of the re-encryption or
// refingerprint job takes the tokens left off the key after the last
// batch's last id, in id order, never those behind it (a batch that
// looked from the first id on read every token done before it: a job
// quadratic in the tenant's tokens).
func TestKeyJobBatchesWalkOnFromTheirCursor(t *testing.T) {
	for _, walk := range []string{"reencrypt", "refingerprint"} {
		t.Run(walk, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			cards := e.seed(t, 6)
			if walk == "reencrypt" {
				_, err := e.svc.RotateDataKey(ctx, e.actor, 0)
				require.NoError(t, err)
			} else {
				e.rotateFingerprintKeyOnly(t)
			}
			ids := sortedIDs(cards)
			all, err := postgres.WalkBatchAfter(ctx, e.svc, e.actor.TenantID, walk, uuid.Nil)
			require.NoError(t, err)
			assert.Equal(t, ids, all, "a pass starts at the first id")
			rest, err := postgres.WalkBatchAfter(ctx, e.svc, e.actor.TenantID, walk, ids[2])
			require.NoError(t, err)
			assert.Equal(t, ids[3:], rest, "the next batch starts after the cursor")
		})
	}
}

// sortedIDs returns the ids of cards in the order PostgreSQL sorts uuids.
func sortedIDs(cards map[uuid.UUID]string) []uuid.UUID {
	ids := slices.Collect(maps.Keys(cards))
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return ids
}

// rotateFingerprintKeyOnly adds and promotes a new PRF key and leaves the
// refingerprint job it enqueues pending, every token off the new key.
func (e *env) rotateFingerprintKeyOnly(t *testing.T) {
	t.Helper()
	job, err := e.svc.RotateFingerprintKey(context.Background(), e.actor, 0)
	require.NoError(t, err)
	require.Equal(t, "pending", job.Status)
}

// TestReencryptPassesAgainOverATokenARequestHeld: a token a request holds
// when the job's pass reaches it is passed over; once the pass ends with
// it still under the old key, another pass from the first id takes it, and
// the job finishes.
func TestReencryptPassesAgainOverATokenARequestHeld(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards, job := e.seedRotated(t, 4)
	first := sortedIDs(cards)[0]
	held, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = held.Exec(ctx, `SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE`, first)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := e.svc.RunOneKeyJob(ctx, "worker-1", job.ID)
		done <- err
	}()
	require.Eventually(t, func() bool {
		j, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
		return err == nil && j.Done == 3
	}, 10*time.Second, 5*time.Millisecond, "the pass re-seals the tokens no request holds")
	require.NoError(t, held.Rollback(ctx))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not take the token once the request let it go")
	}
	j, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", j.Status)
	assert.Equal(t, int64(4), j.Done)
	e.assertAllReveal(t, cards)
}
