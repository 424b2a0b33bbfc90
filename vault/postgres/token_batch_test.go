package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestConcurrentTokenizeBatches: concurrent tokenizations share batches
// (newTokenBatch); each new card gets one token, one token.create audit row
// and, the tenant having a webhook, one token.created event, and repeats of
// one business key inside the burst still make exactly one token.
func TestConcurrentTokenizeBatches(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/batch")
	require.NoError(t, err)
	const distinct, repeats = 48, 16
	type result struct {
		tok     vault.Token
		created bool
		err     error
	}
	results := make(chan result, distinct+repeats)
	for i := range distinct + repeats {
		go func() {
			in := visa(fmt.Sprintf("pm_batch_%d", i))
			if i >= distinct {
				in = visa("pm_batch_same")
			}
			in.Card.Number = vaulttest.LuhnNumber("424242", 16, i%distinct)
			tok, created, err := e.svc.Tokenize(ctx, e.actor, in)
			results <- result{tok, created, err}
		}()
	}
	created := map[string]int{}
	for range distinct + repeats {
		r := <-results
		require.NoError(t, r.err)
		if r.created {
			created[r.tok.BusinessKey]++
		}
	}
	assert.Len(t, created, distinct+1, "one new token per business key")
	for key, n := range created {
		assert.Equal(t, 1, n, key)
	}
	var tokens, audits, events int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tokens WHERE tenant_id = $1 AND business_key LIKE 'pm_batch_%'),
		(SELECT count(*) FROM audit_events a JOIN tokens t ON t.id = a.token_id
		  WHERE t.tenant_id = $1 AND t.business_key LIKE 'pm_batch_%' AND a.action = 'token.create' AND a.detail = '{}'),
		(SELECT count(*) FROM webhook_events WHERE tenant_id = $1 AND type = 'token.created')`,
		e.actor.TenantID).Scan(&tokens, &audits, &events))
	assert.Equal(t, distinct+1, tokens)
	assert.Equal(t, distinct+1, audits, "one token.create row per new token")
	assert.Equal(t, distinct+1, events, "one token.created event per new token")
}

// TestTokenBatchFailureFailsOnlyTheBadRow: a batch that PostgreSQL refuses
// (here one row breaks a foreign key) is written again one row at a time,
// so only the bad row's request fails.
func TestTokenBatchFailureFailsOnlyTheBadRow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ins := []vault.TokenizeInput{visa("pm_batchfail_a"), visa("pm_batchfail_b"), visa("pm_batchfail_bad")}
	inserted, errs, err := postgres.WriteTokenBatch(ctx, e.svc, e.actor, ins, true)
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, false}, inserted)
	assert.NoError(t, errs[0])
	assert.NoError(t, errs[1])
	assert.Error(t, errs[2])
	var n int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE business_key LIKE 'pm_batchfail_%'`).Scan(&n))
	assert.Equal(t, 2, n)
}

// TestTokenBatchReleasesUpdatesBeforeItsCommit: a request of a new tokens'
// batch whose business key holds a committed token with another card
// wrote nothing there and is let go before the batch commits, to reconcile
// that token; a replay of the card its key holds, a new token, and a
// second row naming the key an earlier row of the batch took (a token
// visible only once the batch commits) wait for the commit.
func TestTokenBatchReleasesUpdatesBeforeItsCommit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, cardOf("pm_rel_held", testNumber(1), "04"))
	ins := []vault.TokenizeInput{
		cardOf("pm_rel_held", testNumber(2), "04"), // another card: an update
		cardOf("pm_rel_new", testNumber(3), "04"),  // a new token
		cardOf("pm_rel_dup", testNumber(4), "04"),  // a new token …
		cardOf("pm_rel_dup", testNumber(5), "04"),  // … whose key this row names too
		cardOf("pm_rel_held", testNumber(1), "04"), // the card the key holds: a replay
	}
	inserted, released, err := postgres.ReleasedByTokenBatch(ctx, e.svc, e.actor, ins)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true, true, false, false}, inserted)
	assert.Equal(t, []bool{true, false, false, false, false}, released)
}

// TestTokenBatchOfTakenKeysIsRolledBack: a new tokens' batch whose every
// business key holds another card, none of which it reconciles itself
// (these requests were prepared without, as a request the batch cannot
// settle is), wrote nothing (each request reconciles its token in an
// update batch), so its transaction, which only locked an audit lane and
// those tokens, is rolled back instead of spending a durable commit: the
// lane it locked names an aborted transaction.
func TestTokenBatchOfTakenKeysIsRolledBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, cardOf("pm_taken_a", testNumber(1), "04"))
	e.tokenize(t, cardOf("pm_taken_b", testNumber(2), "04"))
	ins := []vault.TokenizeInput{cardOf("pm_taken_a", testNumber(3), "04"), cardOf("pm_taken_b", testNumber(4), "04")}
	inserted, errs, err := postgres.WriteTokenBatch(ctx, e.svc, e.actor, ins, false)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false}, inserted)
	assert.Equal(t, []error{nil, nil}, errs)
	var lockers []string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT coalesce(array_agg(pg_xact_status(xmax::text::xid8)), '{}')
		FROM audit_lanes WHERE chain_id = $1 AND xmax::text <> '0'`, e.actor.TenantID).Scan(&lockers))
	assert.Equal(t, []string{"aborted"}, lockers, "the lane the batch locked")
}

// TestTokenBatchReconcilesTakenKeysInItsTransaction: a request of a new
// tokens' batch whose business key holds a committed token with another
// card reconciles that token in the batch's own transaction (the replaced
// card kept as a version, the update audited, all committed with the new
// tokens), instead of in a batch of updates after it; a row naming the key
// an earlier row of the batch took waits for the commit, and a request
// whose actor may not replace the card number is let go to reconcile (and
// be refused) on its own.
func TestTokenBatchReconcilesTakenKeysInItsTransaction(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	held, _ := e.tokenize(t, cardOf("pm_rec_held", testNumber(1), "04"))
	e.tokenize(t, cardOf("pm_rec_same", testNumber(2), "04"))
	ins := []vault.TokenizeInput{
		cardOf("pm_rec_held", testNumber(3), "05"), // another card: reconciled here
		cardOf("pm_rec_new", testNumber(4), "04"),  // a new token
		cardOf("pm_rec_same", testNumber(2), "04"), // the card the key holds: a replay
		cardOf("pm_rec_new", testNumber(5), "04"),  // the key the second row took
	}
	inserted, reconciled, released, err := postgres.ReconciledByTokenBatch(ctx, e.svc, e.actor, ins)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true, false, false}, inserted)
	assert.Equal(t, []bool{true, false, false, false}, reconciled)
	assert.Equal(t, []bool{false, false, false, false}, released)

	var xmins []string
	var last4 string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT array_agg(DISTINCT xmin::text), max(last_four) FILTER (WHERE id = $2)
		FROM tokens WHERE tenant_id = $1 AND business_key IN ('pm_rec_held', 'pm_rec_new')`,
		e.actor.TenantID, held.ID).Scan(&xmins, &last4))
	assert.Len(t, xmins, 1, "the updated token and the new one were written by one transaction")
	assert.Equal(t, testNumber(3)[12:], last4, "the token holds the new card")
	versions, err := e.svc.ListTokenVersions(ctx, e.actor, held.ID)
	require.NoError(t, err)
	assert.Len(t, versions, 1, "the replaced card is kept")
	assert.Equal(t, 1, e.auditCount(t, held.ID, vault.ActionTokenUpdate))

	createOnly := e.actorWith(t, vault.ScopeTokensCreate)
	_, reconciled, released, err = postgres.ReconciledByTokenBatch(ctx, e.svc, createOnly, []vault.TokenizeInput{
		cardOf("pm_rec_held", testNumber(6), "05"), cardOf("pm_rec_other", testNumber(7), "04")})
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false}, reconciled, "a number change needs tokens:update")
	assert.Equal(t, []bool{true, false}, released)
}
