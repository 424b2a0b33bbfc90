package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// TestTheSweeperFinishesPendingForwardsOfAStoppedProcess: two forwards
// whose pending records committed and whose process never wrote an outcome
// (prepared, never sent) are marked failed, outcome unknown, each once its
// destination's timeout plus the grace has passed and not before; each is
// audited; GET and a replay of its Idempotency-Key answer that failure
// without sending; and an outcome that comes after all replaces the
// sweeper's.
func TestTheSweeperFinishesPendingForwardsOfAStoppedProcess(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	e.clock.Advance(5 * 365 * 24 * time.Hour) // after every other test's records
	from := e.clock.Now()
	e.tokenize(t, visa("pm_sweep_slow"))
	quickTok, _ := e.tokenize(t, visa("pm_sweep_quick"))
	slowURL, quickURL := dest.URL+"/cde-import", dest.URL+"/quick"
	e.ownVaultDestination(t, slowURL) // the preset's 15 s timeout
	_, err := e.svc.CreateDestination(ctx, e.actor, vault.DestinationInput{URL: quickURL, Preset: "stripe_own_vault",
		Config: []byte(`{"timeout_ms":1000}`)})
	require.NoError(t, err)
	slowIn := forwardIn("pm_sweep_slow", slowURL, "sweep-slow", allCardFields...)
	quickIn := forwardIn("pm_sweep_quick", quickURL, "sweep-quick", allCardFields...)
	recs, errs, _, err := postgres.PrepareForwardBatch(ctx, e.svc, []postgres.ForwardBatchRequest{
		{Actor: e.actor, In: slowIn}, {Actor: e.actor, In: quickIn}})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	slow, quick := recs[0], recs[1]

	grace := vault.MinForwardPendingGrace
	e.clock.Advance(grace + time.Second - time.Millisecond)
	n, next, err := e.svc.SweepPendingForwards(ctx, grace, from)
	require.NoError(t, err)
	assert.Zero(t, n, "no record is swept before its destination's timeout and the grace have passed")
	e.clock.Advance(2 * time.Millisecond)
	n, next, err = e.svc.SweepPendingForwards(ctx, grace, next)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the 1 s destination's record is swept, the 15 s one's not yet")
	assert.Equal(t, []string{slow.ID}, e.pendingRecords(t))

	got, err := e.svc.GetForwardingRequest(ctx, e.actor, quick.ID)
	require.NoError(t, err)
	assert.Equal(t, vault.ForwardFailed, got.Status)
	assert.Equal(t, vault.CodeForwardConnectionError, got.ErrorCode)
	assert.True(t, got.OutcomeUnknown)
	assert.Contains(t, got.FailureMessage(), "unknown")
	assert.Nil(t, got.Response)
	assert.Equal(t, quick.Request, got.Request, "the redacted request is kept")
	for range 2 {
		again, err := e.svc.Forward(ctx, e.actor, quickIn)
		assert.Equal(t, vault.CodeForwardConnectionError, vault.AsError(err).Code)
		assert.Equal(t, vault.KindUpstream, vault.AsError(err).Kind)
		assert.Contains(t, err.Error(), "unknown")
		assert.True(t, again.Replayed)
		assert.Equal(t, got.ID, again.ID)
		assert.True(t, again.OutcomeUnknown)
	}
	assert.Empty(t, dest.received(), "a replay sends nothing")
	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events WHERE action = $1 AND token_id = $2`,
		string(vault.ActionForwardingSweep), quickTok.ID).Scan(&detail))
	assert.Equal(t, map[string]any{"forwarding_request": quick.ID, "status": "failed",
		"failure_code": vault.CodeForwardConnectionError, "destination_outcome": "unknown"}, detail)

	e.clock.Advance(15 * time.Second)
	n, next, err = e.svc.SweepPendingForwards(ctx, grace, next)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the 15 s destination's record is swept once its timeout has passed too")
	assert.Empty(t, e.pendingRecords(t))
	n, _, err = e.svc.SweepPendingForwards(ctx, grace, next)
	require.NoError(t, err)
	assert.Zero(t, n, "a record is swept once")

	errs, _, err = postgres.WriteOutcomeBatch(ctx, e.svc, []postgres.OutcomeBatchItem{{Rec: slow}})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	late, err := e.svc.GetForwardingRequest(ctx, e.actor, slow.ID)
	require.NoError(t, err)
	assert.Equal(t, vault.ForwardSucceeded, late.Status, "an outcome that comes late replaces the sweeper's")
	assert.False(t, late.OutcomeUnknown)
	assert.Empty(t, late.FailureMessage())
}
