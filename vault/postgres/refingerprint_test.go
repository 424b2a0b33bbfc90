package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// byFingerprint returns the ids of e's tenant's tokens a lookup by fp finds.
func (e *env) byFingerprint(t *testing.T, fp []byte) []uuid.UUID {
	t.Helper()
	page, err := e.svc.ListTokens(context.Background(), e.actor, vault.ListTokensParams{Fingerprint: fp, Limit: 100})
	require.NoError(t, err)
	var ids []uuid.UUID
	for _, tok := range page.Tokens {
		ids = append(ids, tok.ID)
	}
	return ids
}

func TestFingerprintRotationRecomputesEveryFingerprintWhileLookupsKeepWorking(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	var tokens []vault.Token
	for i := range 4 {
		tok, _, err := e.svc.Tokenize(ctx, e.actor, cardOf(fmt.Sprintf("pm_fp_%d", i), vaulttest.LuhnNumber("424242", 16, i), "04"))
		require.NoError(t, err)
		tokens = append(tokens, tok)
	}
	oldFP := tokens[0].Fingerprint
	kept, err := e.svc.FinishIdempotent(ctx, e.begin(t, e.actor, idemReq("before-rotation", `{}`)),
		vault.StoredResponse{Status: 201, Body: []byte(`{"run":1}`)})
	require.NoError(t, err)
	require.True(t, kept)

	job, err := e.svc.RotateFingerprintKey(ctx, e.actor, 0)
	require.NoError(t, err)
	assert.Equal(t, vault.KeyJobRefingerprint, job.Kind)
	assert.Equal(t, int64(4), job.Total)
	_, stored, err := e.svc.BeginIdempotent(ctx, e.actor, idemReq("before-rotation", `{}`))
	require.NoError(t, err)
	require.NotNil(t, stored, "a retry that began before the rotation still replays its answer")

	// Hold the first token, as a request would: the job recomputes the others
	// and waits for it.
	hold, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = hold.Exec(ctx, `SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE`, tokens[0].ID)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := e.svc.RunOneKeyJob(ctx, "worker", job.ID); done <- err }()
	require.Eventually(t, func() bool {
		got, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
		return err == nil && got.Done == 3
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []uuid.UUID{tokens[0].ID}, e.byFingerprint(t, oldFP), "midway: the held token by its fingerprint")
	assert.Equal(t, []uuid.UUID{tokens[1].ID}, e.byFingerprint(t, tokens[1].Fingerprint), "midway: a recomputed token by its former one")
	require.NoError(t, hold.Rollback(ctx))
	require.NoError(t, <-done)

	finished, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", finished.Status)
	var left int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM tokens t WHERE tenant_id = $1 AND fingerprint_key_id <>
		(SELECT key_id FROM tenant_key_versions WHERE tenant_id = t.tenant_id AND purpose = 'fingerprint' AND state = 'primary')`,
		e.actor.TenantID).Scan(&left))
	assert.Zero(t, left, "every fingerprint is under the new key")
	again, _, err := e.svc.Tokenize(ctx, e.actor, cardOf("pm_fp_again", vaulttest.LuhnNumber("424242", 16, 0), "04"))
	require.NoError(t, err)
	assert.NotEqual(t, oldFP, again.Fingerprint, "new fingerprints come from the new key")
	assert.ElementsMatch(t, []uuid.UUID{tokens[0].ID, again.ID}, e.byFingerprint(t, again.Fingerprint), "the same card, by its new fingerprint")
	assert.Equal(t, []uuid.UUID{tokens[0].ID}, e.byFingerprint(t, oldFP), "and still by the one taken before the rotation")
	_, created, err := e.svc.Tokenize(ctx, e.actor, cardOf("pm_fp_0", vaulttest.LuhnNumber("424242", 16, 0), "04"))
	require.NoError(t, err)
	assert.False(t, created, "the same card under its business key is still the same token")
}
