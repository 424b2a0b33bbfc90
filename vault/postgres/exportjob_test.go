package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// exportEnv is an env with n tokens (business keys exp_0…) and a
// stripe_own_vault destination.
func exportEnv(t *testing.T, n int) (*env, vault.ForwardDestination) {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	for i := range n {
		_, _, err := e.svc.Tokenize(ctx, e.actor, vault.TokenizeInput{BusinessKey: "exp_" + string(rune('a'+i)),
			Card: card.CardInput{Number: "4242424242424242", ExpMonth: "12", ExpYear: "2031", CVC: "123"}})
		require.NoError(t, err)
		e.clock.Advance(time.Minute)
	}
	dest, err := e.svc.CreateDestination(ctx, e.actor, vault.DestinationInput{URL: "https://vault.example.com/cde-import", Preset: "stripe_own_vault"})
	require.NoError(t, err)
	return e, dest
}

// TestExportFilterSelectsTokensWhenTheJobStarts: the business-key prefix and
// created_after select the items, counted as the job's total.
func TestExportFilterSelectsTokensWhenTheJobStarts(t *testing.T) {
	e, dest := exportEnv(t, 4)
	ctx := context.Background()
	after := e.clock.Now().Add(-150 * time.Second) // the last two tokens were created after it
	job, err := e.svc.CreateExport(ctx, e.actor, vault.CreateExportInput{DestinationID: dest.ID,
		Filter: vault.ExportFilter{BusinessKeyPrefix: "exp_", CreatedAfter: &after}})
	require.NoError(t, err)
	assert.EqualValues(t, 2, job.Total)
	none, err := e.svc.CreateExport(ctx, e.actor, vault.CreateExportInput{DestinationID: dest.ID,
		Filter: vault.ExportFilter{BusinessKeyPrefix: "nope_"}})
	require.NoError(t, err)
	assert.Zero(t, none.Total)
}

// TestAnExportItemIsAuditedOnlyWhileItsWorkerHoldsIt: a worker that lost
// its item (the job aborted) gets ErrExportEnded and writes no token.export
// row; a remote id that holds a card number fails the item instead of
// being stored.
func TestAnExportItemIsAuditedOnlyWhileItsWorkerHoldsIt(t *testing.T) {
	e, dest := exportEnv(t, 2)
	ctx := context.Background()
	job, err := e.svc.CreateExport(ctx, e.actor, vault.CreateExportInput{DestinationID: dest.ID})
	require.NoError(t, err)
	items, err := e.svc.ClaimExportItems(ctx, "w1", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, items, 2)
	again, err := e.svc.ClaimExportItems(ctx, "w2", 10, time.Minute)
	require.NoError(t, err)
	assert.Empty(t, again, "leased items are not claimed twice")

	require.NoError(t, e.svc.AuditExportItem(ctx, "w1", items[0]))
	require.NoError(t, e.svc.AuditExportItem(ctx, "w1", items[1]))
	// A UUID whose digit groups read as a Luhn-valid number is an id, kept.
	uuidID := "42424242-4242-4242-a000-000000000000"
	require.NoError(t, e.svc.RecordExportAttempt(ctx, "w1", items[1], vault.ExportAttempt{Status: vault.ItemSucceeded, RemoteID: uuidID}))
	require.NoError(t, e.svc.ReleaseExportItem(ctx, "w1", items[1]))
	assert.True(t, vault.IsExportEnded(e.svc.AuditExportItem(ctx, "w2", items[0])), "another worker's item")
	require.NoError(t, e.svc.RecordExportAttempt(ctx, "w1", items[0],
		vault.ExportAttempt{Status: vault.ItemSucceeded, RemoteID: "tok_4242424242424242"}))
	_, err = e.svc.AbortExport(ctx, e.actor, job.ID)
	require.NoError(t, err)
	assert.True(t, vault.IsExportEnded(e.svc.AuditExportItem(ctx, "w1", items[1])), "an item that has ended")

	var audited int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'token.export'
		AND detail->>'export_id' = $1`, job.ID.String()).Scan(&audited))
	assert.Equal(t, 2, audited)
	kept, err := e.svc.ListExportItems(ctx, e.actor, job.ID, vault.ItemSucceeded, 10, 0)
	require.NoError(t, err)
	require.Len(t, kept.Items, 1)
	assert.Equal(t, uuidID, kept.Items[0].RemoteID)
	page, err := e.svc.ListExportItems(ctx, e.actor, job.ID, vault.ItemFailed, 10, 0)
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Empty(t, page.Items[0].RemoteID)
	assert.Contains(t, page.Items[0].LastError, "looks like a card number")
	got, err := e.svc.GetExport(ctx, e.actor, job.ID)
	require.NoError(t, err)
	assert.Equal(t, vault.ExportAborted, got.Status)
	assert.EqualValues(t, 1, got.Failures)
}

// TestRetiringAKeyWaitsForAnExportsHeaders: a running export's headers are
// sealed with the data keyset, so an old key is retired only after the
// re-encryption job re-sealed them, and they still open afterwards.
func TestRetiringAKeyWaitsForAnExportsHeaders(t *testing.T) {
	e, dest := exportEnv(t, 1)
	ctx := context.Background()
	job, err := e.svc.CreateExport(ctx, e.actor, vault.CreateExportInput{DestinationID: dest.ID,
		Headers: []vault.ForwardHeader{{Name: "X-API-Key", Value: "cvk_theirs"}}})
	require.NoError(t, err)
	old := keyByState(e.keyStatus(t), "primary")
	_, err = e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	reencrypt, _, err := e.svc.StartReencrypt(ctx, e.actor)
	require.NoError(t, err)
	_, err = e.svc.RunOneKeyJob(ctx, "worker", reencrypt.ID)
	require.NoError(t, err)
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false))
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, true))

	setup, err := e.svc.ExportSetup(ctx, job.ID)
	require.NoError(t, err, "the export's headers open under the new key")
	assert.Equal(t, []vault.ForwardHeader{{Name: "X-API-Key", Value: "cvk_theirs"}}, setup.Headers)
}

// TestExportSendSlotsFollowEachOtherAtTheJobsRate: reservations of a job's
// send slots, from any process, follow each other at the job's rate (10 a
// second here: a block of 5 slots lasts 0.5 s); idle time is not banked
// for a later burst, and a job that ended reserves nothing.
func TestExportSendSlotsFollowEachOtherAtTheJobsRate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	job := e.exportJob(t, 1) // rate 10
	e.checkSlotsAtTenASecond(t, func(n int) (time.Duration, error) { return e.svc.ReserveExportSends(ctx, job, n) })
	_, err := e.pool.Exec(ctx, `UPDATE export_jobs SET status = 'aborted' WHERE id = $1`, job)
	require.NoError(t, err)
	_, err = e.svc.ReserveExportSends(ctx, job, 1)
	assert.ErrorIs(t, err, vault.ErrExportEnded)
}

// checkSlotsAtTenASecond checks that reserve, a job's slot reservation at
// ten slots a second on a job nothing has reserved yet, answers each
// block's wait from e's clock as the blocks follow each other.
func (e *env) checkSlotsAtTenASecond(t *testing.T, reserve func(n int) (time.Duration, error)) {
	t.Helper()
	tests := []struct {
		name    string
		advance time.Duration
		n       int
		want    time.Duration
	}{
		{"the first block starts now", 0, 5, 0},
		{"the next waits for the first to pass", 0, 5, 500 * time.Millisecond},
		{"later, it waits for what is left", 700 * time.Millisecond, 1, 300 * time.Millisecond},
		{"after an idle while it starts now, not earlier", 10 * time.Second, 1, 0},
		{"and the next one a slot later", 0, 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		e.clock.Advance(tt.advance)
		got, err := reserve(tt.n)
		require.NoError(t, err, tt.name)
		assert.InDelta(t, tt.want.Seconds(), got.Seconds(), 1e-6, tt.name)
	}
}
