package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// rowVersion returns what changes whenever a token row is rewritten or
// locked: its tuple's location, xmin and xmax.
func (e *env) rowVersion(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var v string
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT ctid::text || ' ' || xmin::text || ' ' || xmax::text FROM tokens WHERE id = $1`, id).Scan(&v))
	return v
}

// createDetails returns the detail of each token.create audit row of a
// token, oldest first.
func (e *env) createDetails(t *testing.T, id uuid.UUID) []map[string]any {
	t.Helper()
	rows, err := e.pool.Query(context.Background(),
		`SELECT detail FROM audit_events WHERE token_id = $1 AND action = 'token.create' ORDER BY id`, id)
	require.NoError(t, err)
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var d map[string]any
		require.NoError(t, rows.Scan(&d))
		out = append(out, d)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestAReplayOfTheStoredCardRewritesNothing: forwarding again exactly the
// card a business key holds (its CVC still held) answers the same token,
// audits the repeated import against that token, and leaves the row as it
// was (no new tuple, the CVC's expiry unchanged); the card still reveals.
func TestAReplayOfTheStoredCardRewritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first, _ := e.tokenize(t, visa("pm_replay"))
	before := e.rowVersion(t, first.ID)
	var expires time.Time
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cvc_expires_at FROM tokens WHERE id = $1`, first.ID).Scan(&expires))

	e.clock.Advance(time.Minute)
	again, created := e.tokenize(t, visa("pm_replay"))
	assert.False(t, created)
	assert.Equal(t, first, again)
	assert.Equal(t, before, e.rowVersion(t, first.ID), "a replay does not rewrite the row")
	var after time.Time
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cvc_expires_at FROM tokens WHERE id = $1`, first.ID).Scan(&after))
	assert.Equal(t, expires, after)
	assert.Equal(t, []map[string]any{{}, {"existing": true}}, e.createDetails(t, first.ID))

	out, err := e.svc.Detokenize(ctx, e.actor, first.ID, "")
	require.NoError(t, err)
	assert.Equal(t, "4242424242424242", out.Card.PAN.Reveal())
	assert.Equal(t, "123", out.Card.CVC.Reveal())
}

// TestAReplayThatIsNotTheStoredCardTakesTheFullPath: anything the digest
// or the row says differs — a CVC to store again after a reveal consumed
// it, new metadata, another name, a CVC-less replay of a card stored with
// one, another tenant's key — is reconciled as before, and the next exact
// replay is again answered without a rewrite.
func TestAReplayThatIsNotTheStoredCardTakesTheFullPath(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_full"))

	_, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	again, _ := e.tokenize(t, visa("pm_full"))
	assert.True(t, again.CVCAvailable, "the consumed CVC is stored again")
	assert.Equal(t, map[string]any{"existing": true, "cvc_refreshed": true}, lastDetail(t, e, tok.ID))

	in := visa("pm_full")
	in.Metadata = map[string]string{"k": "v"}
	updated, _ := e.tokenize(t, in)
	assert.Equal(t, map[string]string{"k": "v"}, updated.Metadata)

	in.Card.Name = "Jane Doe"
	renamed, _ := e.tokenize(t, in)
	assert.Equal(t, "Jane Doe", renamed.CardholderName)

	noCVC := in
	noCVC.Card.CVC = ""
	_, created := e.tokenize(t, noCVC)
	assert.False(t, created)
	assert.Equal(t, map[string]any{"existing": true}, lastDetail(t, e, tok.ID))

	other := e.otherActor(t)
	foreign, created, err := e.svc.Tokenize(ctx, other, in)
	require.NoError(t, err)
	assert.True(t, created, "a business key is per tenant")
	assert.NotEqual(t, tok.ID, foreign.ID)

	before := e.rowVersion(t, tok.ID)
	_, _ = e.tokenize(t, in)
	assert.Equal(t, before, e.rowVersion(t, tok.ID), "the exact replay after an update rewrites nothing")
}

// TestAReplayOfATokenWithoutDigestIsReconciled: a token stored before card
// digests were kept (card_digest NULL) is replayed through the full path,
// which stores its digest, so the next replay rewrites nothing.
func TestAReplayOfATokenWithoutDigestIsReconciled(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_legacy"))
	_, err := e.pool.Exec(ctx, `UPDATE tokens SET card_digest = NULL WHERE id = $1`, tok.ID)
	require.NoError(t, err)
	before := e.rowVersion(t, tok.ID)
	again, created := e.tokenize(t, visa("pm_legacy"))
	assert.False(t, created)
	assert.Equal(t, tok.ID, again.ID)
	assert.NotEqual(t, before, e.rowVersion(t, tok.ID), "the full path stored the CVC again")
	var digest []byte
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT card_digest FROM tokens WHERE id = $1`, tok.ID).Scan(&digest))
	assert.Len(t, digest, 32)
	before = e.rowVersion(t, tok.ID)
	_, _ = e.tokenize(t, visa("pm_legacy"))
	assert.Equal(t, before, e.rowVersion(t, tok.ID))
}

// TestConcurrentReplaysAreEachAuditedOnce: many concurrent replays of a few
// tokens (batched together) each answer their own token's record, as the
// first tokenization answered it, and each write one audit row naming it.
func TestConcurrentReplaysAreEachAuditedOnce(t *testing.T) {
	e := newEnv(t)
	keys := []string{"pm_c0", "pm_c1", "pm_c2", "pm_c3"}
	ids, firsts := map[string]uuid.UUID{}, map[string]vault.Token{}
	for _, k := range keys {
		tok, _ := e.tokenize(t, visa(k))
		ids[k], firsts[k] = tok.ID, tok
	}
	const per = 16
	var wg sync.WaitGroup
	errs := make(chan error, per*len(keys))
	for i := range per * len(keys) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := keys[i%len(keys)]
			tok, created, err := e.svc.Tokenize(context.Background(), e.actor, visa(k))
			switch {
			case err != nil:
				errs <- err
			case created || !assert.ObjectsAreEqual(firsts[k], tok):
				errs <- fmt.Errorf("%s: answered %+v, want the stored token %+v", k, tok, firsts[k])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, k := range keys {
		assert.Len(t, e.createDetails(t, ids[k]), 1+per, k)
		assert.Equal(t, []string{"token.create"}, unique(e.auditActions(t, ids[k])))
	}
}

// unique returns the distinct values of in, in first-seen order.
func unique(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// TestAReplayProbesTheBusinessKeyIndex: the replay statements (alone, and
// within the new tokens' batch) find each request's token through both
// columns of tokens_business_key, not by scanning the tenant's tokens: the
// cost of a replay must not grow with the tenant. The tenant holds a few
// thousand tokens, analyzed, as the planner sees a real one.
func TestAReplayProbesTheBusinessKeyIndex(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_plan"))
	_, err := e.pool.Exec(ctx, `INSERT INTO tokens (id, tenant_id, business_key, fingerprint, fingerprint_key_id, key_id,
		pan_ct, iin, last_four, pan_length, scheme, exp_month, exp_year, metadata, created_at, updated_at)
		SELECT gen_random_uuid(), tenant_id, 'pm_fill' || g, fingerprint, fingerprint_key_id, key_id, pan_ct, iin,
		       last_four, pan_length, scheme, exp_month, exp_year, metadata, created_at, updated_at
		FROM tokens, generate_series(1, 5000) g WHERE id = $1`, tok.ID)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `ANALYZE tokens`)
	require.NoError(t, err)
	conds, err := postgres.ReplayIndexConds(ctx, e.svc, e.actor, visa("pm_plan"))
	require.NoError(t, err)
	require.NotEmpty(t, conds)
	for _, c := range conds {
		if !assert.Contains(t, c, "business_key") {
			continue
		}
		assert.Contains(t, c, "tenant_id")
	}
}
