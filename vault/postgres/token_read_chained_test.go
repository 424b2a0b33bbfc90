package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// readerLane returns the reader lane's head of the tenant's chain.
func (e *env) readerLane(t *testing.T, tenant uuid.UUID) (seq int64, hash []byte) {
	t.Helper()
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT seq, hash FROM audit_lanes WHERE chain_id = $1 AND lane = $2`,
		tenant, postgres.ReaderLane(e.svc)).Scan(&seq, &hash))
	return seq, hash
}

// readLanes returns the lane and sequence number of every read audit row
// of the token, oldest first.
func (e *env) readLanes(t *testing.T, id uuid.UUID) [][2]int64 {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT chain_lane, chain_seq FROM audit_events
		WHERE token_id = $1 AND action = $2 ORDER BY chain_seq`, id, string(vault.ActionTokenRead))
	require.NoError(t, err)
	defer rows.Close()
	var out [][2]int64
	for rows.Next() {
		var l, s int64
		require.NoError(t, rows.Scan(&l, &s))
		out = append(out, [2]int64{l, s})
	}
	require.NoError(t, rows.Err())
	return out
}

// requireVerified runs audit verify over the tenant's chain.
func (e *env) requireVerified(t *testing.T, tenant uuid.UUID) {
	t.Helper()
	r, err := e.svc.VerifyAudit(context.Background(), &tenant)
	require.NoError(t, err)
	require.True(t, r.OK, "audit verify: %+v", r)
}

// TestReadBatchChainsAfterTheHeadItLeft: a process's first read batch has
// no idle head and is written the ordinary way, on the highest lane; the
// next one is written in one statement after the head the first left,
// each row the next on that lane, and the chain verifies.
func TestReadBatchChainsAfterTheHeadItLeft(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_chained_read"))

	_, err := postgres.ReadBatchChained(ctx, e.svc, []postgres.BatchLookup{{e.actor, tok.ID}})
	require.ErrorIs(t, err, postgres.ErrNotChained, "no idle head yet")
	assert.Empty(t, e.readLanes(t, tok.ID), "a batch not chained writes nothing")

	found, err := postgres.ReadBatch(ctx, e.svc, []postgres.BatchLookup{{e.actor, tok.ID}})
	require.NoError(t, err)
	require.Equal(t, []bool{true}, found)
	first := e.readLanes(t, tok.ID)
	require.Len(t, first, 1)
	assert.Equal(t, postgres.ReaderLane(e.svc), first[0][0], "reads take the process's first reader lane")
	assert.GreaterOrEqual(t, first[0][0], int64(4), "reader lanes are the upper half")

	found, err = postgres.ReadBatchChained(ctx, e.svc, []postgres.BatchLookup{{e.actor, tok.ID}, {e.actor, tok.ID}})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true}, found)
	lane, seq := first[0][0], first[0][1]
	assert.Equal(t, [][2]int64{{lane, seq}, {lane, seq + 1}, {lane, seq + 2}}, e.readLanes(t, tok.ID))
	head, _ := e.readerLane(t, e.actor.TenantID)
	assert.Equal(t, seq+2, head, "the lane advanced with its rows")
	e.requireVerified(t, e.actor.TenantID)
}

// TestReadBatchChainedWritesNothingWhenItCannot: a batch chained after a
// head another process moved meanwhile, or naming a token that is not
// found, fails whole (no row, the lane where it was); the ordinary write
// then audits it, and the chain verifies.
func TestReadBatchChainedWritesNothingWhenItCannot(t *testing.T) {
	tests := []struct {
		name   string
		before func(e *env, tok vault.Token)
		reqs   func(e *env, tok vault.Token) []postgres.BatchLookup
		found  []bool
	}{
		{"another process moved the lane", func(e *env, tok vault.Token) {
			replica, ra, _ := e.staleReplica(t)
			postgres.SetReaderTurn(replica, 0) // the turn of e.svc: both take the same lane first
			_, err := postgres.ReadBatch(context.Background(), replica, []postgres.BatchLookup{{ra, tok.ID}})
			require.NoError(t, err)
		}, func(e *env, tok vault.Token) []postgres.BatchLookup {
			return []postgres.BatchLookup{{e.actor, tok.ID}}
		}, []bool{true}},
		{"a token not found", func(*env, vault.Token) {}, func(e *env, tok vault.Token) []postgres.BatchLookup {
			return []postgres.BatchLookup{{e.actor, tok.ID}, {e.actor, uuid.New()}}
		}, []bool{true, false}},
		{"another tenant's token", func(*env, vault.Token) {}, func(e *env, tok vault.Token) []postgres.BatchLookup {
			return []postgres.BatchLookup{{e.otherActor(t), tok.ID}, {e.actor, tok.ID}}
		}, []bool{false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			postgres.SetReaderTurn(e.svc, 0)
			ctx := context.Background()
			tok, _ := e.tokenize(t, visa("pm_chained_moved"))
			_, err := postgres.ReadBatch(ctx, e.svc, []postgres.BatchLookup{{e.actor, tok.ID}})
			require.NoError(t, err, "leaves an idle head")
			tc.before(e, tok)
			reads := len(e.readLanes(t, tok.ID))
			seq, hash := e.readerLane(t, e.actor.TenantID)
			reqs := tc.reqs(e, tok)

			_, err = postgres.ReadBatchChained(ctx, e.svc, reqs)
			require.ErrorIs(t, err, postgres.ErrNotChained)
			assert.Len(t, e.readLanes(t, tok.ID), reads, "no row written")
			afterSeq, afterHash := e.readerLane(t, e.actor.TenantID)
			assert.Equal(t, seq, afterSeq, "the lane did not move")
			assert.Equal(t, hash, afterHash)

			found, err := postgres.ReadBatch(ctx, e.svc, reqs)
			require.NoError(t, err)
			assert.Equal(t, tc.found, found)
			assert.Len(t, e.readLanes(t, tok.ID), reads+1, "the ordinary write audits the found request")
			e.requireVerified(t, e.actor.TenantID)
		})
	}
}

// TestReadBatchChainedAcrossTenants: a batch of two tenants' reads is
// chained after an idle head of each tenant's chain, or not at all.
func TestReadBatchChainedAcrossTenants(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other := e.otherActor(t)
	mine, _ := e.tokenize(t, visa("pm_chained_mine"))
	theirs, _, err := e.svc.Tokenize(ctx, other, visa("pm_chained_theirs"))
	require.NoError(t, err)
	both := []postgres.BatchLookup{{e.actor, mine.ID}, {other, theirs.ID}}

	_, err = postgres.ReadBatch(ctx, e.svc, both[:1])
	require.NoError(t, err)
	_, err = postgres.ReadBatchChained(ctx, e.svc, both)
	require.ErrorIs(t, err, postgres.ErrNotChained, "the other tenant's chain has no idle head")

	_, err = postgres.ReadBatch(ctx, e.svc, both)
	require.NoError(t, err)
	found, err := postgres.ReadBatchChained(ctx, e.svc, both)
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true}, found)
	assert.Len(t, e.readLanes(t, mine.ID), 3)
	assert.Len(t, e.readLanes(t, theirs.ID), 2)
	e.requireVerified(t, e.actor.TenantID)
	e.requireVerified(t, other.TenantID)
}

// TestReplicasKeepTheHeadsOfTheirOwnLanes: two vault processes whose turns
// differ read on different lanes first, so each one's next read batch is
// still chained after the head it left, however the other reads between.
func TestReplicasKeepTheHeadsOfTheirOwnLanes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_chained_replicas"))
	replica, ra, _ := e.staleReplica(t)
	postgres.SetReaderTurn(e.svc, 0)
	postgres.SetReaderTurn(replica, 1)
	require.NotEqual(t, postgres.ReaderLane(e.svc), postgres.ReaderLane(replica))
	mine := []postgres.BatchLookup{{e.actor, tok.ID}}
	theirs := []postgres.BatchLookup{{ra, tok.ID}}
	for _, r := range []struct {
		svc  *postgres.Service
		reqs []postgres.BatchLookup
	}{{e.svc, mine}, {replica, theirs}} {
		_, err := postgres.ReadBatch(ctx, r.svc, r.reqs)
		require.NoError(t, err, "leaves an idle head")
	}
	for range 3 {
		_, err := postgres.ReadBatchChained(ctx, e.svc, mine)
		require.NoError(t, err)
		_, err = postgres.ReadBatchChained(ctx, replica, theirs)
		require.NoError(t, err)
	}
	lanes := map[int64]int{}
	for _, l := range e.readLanes(t, tok.ID) {
		lanes[l[0]]++
	}
	assert.Equal(t, map[int64]int{postgres.ReaderLane(e.svc): 4, postgres.ReaderLane(replica): 4}, lanes)
	e.requireVerified(t, e.actor.TenantID)
}
