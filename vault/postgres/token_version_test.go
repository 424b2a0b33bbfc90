package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// cardOf is a tokenization of business key with number and expiry month.
func cardOf(businessKey, number, month string) vault.TokenizeInput {
	return vault.TokenizeInput{BusinessKey: businessKey, Card: card.CardInput{
		Number: number, ExpMonth: month, ExpYear: "2033", Name: "John Doe"}}
}

// actorWith returns an actor of e's tenant holding only scopes.
func (e *env) actorWith(t *testing.T, scopes ...vault.Scope) vault.Actor {
	t.Helper()
	secret, _, err := e.svc.CreateAPIKey(context.Background(), e.actor.TenantID, scopes, "scoped")
	require.NoError(t, err)
	return vaulttest.Actor(t, e.svc, secret)
}

func TestReplacingACardNumberNeedsTokensUpdate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		scopes   []vault.Scope
		number   string // of the second tokenization; the first is 4242…4242, expiry 04
		month    string
		wantKind vault.Kind // "" when it updates
		last4    string     // the token's last four afterwards
		versions int
	}{
		{"create only: a new expiry updates (account updater)", []vault.Scope{vault.ScopeTokensCreate}, "4242424242424242", "05", "", "4242", 1},
		{"create only: a new number is refused", []vault.Scope{vault.ScopeTokensCreate}, "5555555555554444", "04", vault.KindForbidden, "4242", 0},
		{"create and update: a new number replaces the card", []vault.Scope{vault.ScopeTokensCreate, vault.ScopeTokensUpdate}, "5555555555554444", "04", "", "4444", 1},
		{"create and update: the same card changes nothing", []vault.Scope{vault.ScopeTokensCreate, vault.ScopeTokensUpdate}, "4242424242424242", "04", "", "4242", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.actorWith(t, tt.scopes...)
			first, _, err := e.svc.Tokenize(ctx, a, cardOf("pm_replace", "4242424242424242", "04"))
			require.NoError(t, err)
			_, _, err = e.svc.Tokenize(ctx, a, cardOf("pm_replace", tt.number, tt.month))
			if tt.wantKind != "" {
				require.Equal(t, tt.wantKind, vault.ErrorKind(err), "%v", err)
				assert.Equal(t, vault.CodeMissingScope, vault.AsError(err).Code)
			} else {
				require.NoError(t, err)
			}
			got, err := e.svc.Detokenize(ctx, e.actor, first.ID, "")
			require.NoError(t, err)
			assert.Equal(t, tt.last4, got.Card.PAN.LastFour())
			versions, err := e.svc.ListTokenVersions(ctx, e.actor, first.ID)
			require.NoError(t, err)
			require.Len(t, versions, tt.versions)
			if tt.versions == 1 {
				assert.Equal(t, "4242", versions[0].LastFour, "the replaced card is kept")
				assert.Equal(t, 4, versions[0].ExpiryMonth)
				assert.Equal(t, first.Fingerprint, versions[0].Fingerprint)
			}
		})
	}
}

func TestAReplacedNumberIsAuditedWithBothFingerprints(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before, _, err := e.svc.Tokenize(ctx, e.actor, cardOf("pm_fp", "4242424242424242", "04"))
	require.NoError(t, err)
	after, _, err := e.svc.Tokenize(ctx, e.actor, cardOf("pm_fp", "5555555555554444", "04"))
	require.NoError(t, err)
	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events WHERE tenant_id = $1 AND action = 'token.update'`,
		e.actor.TenantID).Scan(&detail))
	assert.Equal(t, before.Record().Fingerprint, detail["fingerprint_before"])
	assert.Equal(t, after.Record().Fingerprint, detail["fingerprint_after"])
	assert.NotEqual(t, detail["fingerprint_before"], detail["fingerprint_after"])
}

func TestReplacedCardVersionsArePrunedAfterTheirRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _, err := e.svc.Tokenize(ctx, e.actor, cardOf("pm_prune", "4242424242424242", "04"))
	require.NoError(t, err)
	_, _, err = e.svc.Tokenize(ctx, e.actor, cardOf("pm_prune", "4242424242424242", "05"))
	require.NoError(t, err)
	tests := []struct {
		name    string
		advance time.Duration
		kept    int
	}{
		{"kept within the retention", vault.DefaultCardHistoryRetention - time.Second, 1},
		{"deleted past it", 2 * time.Second, 0},
	}
	for _, tt := range tests {
		e.clock.Advance(tt.advance)
		_, err := e.svc.PruneTokenVersions(ctx, vault.DefaultCardHistoryRetention) // every tenant's: the count is not this test's
		require.NoError(t, err)
		versions, err := e.svc.ListTokenVersions(ctx, e.actor, tok.ID)
		require.NoError(t, err)
		assert.Len(t, versions, tt.kept, tt.name)
	}
}

// TestReplacedCardVersionsArePrunedInBoundedBatches: one prune statement
// deletes at most its batch, however many versions are due; the prune runs
// statements until none is left. The clock moves ten years past the
// retention so that every version in the database is due.
func TestReplacedCardVersionsArePrunedInBoundedBatches(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var tok vault.Token
	for _, month := range []string{"01", "02", "03", "04", "05", "06"} {
		var err error
		tok, _, err = e.svc.Tokenize(ctx, e.actor, cardOf("pm_prune_batches", "4242424242424242", month))
		require.NoError(t, err)
	}
	versions, err := e.svc.ListTokenVersions(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	require.Len(t, versions, 5)
	e.clock.Advance(vault.DefaultCardHistoryRetention + 3650*24*time.Hour)

	n, err := postgres.PruneTokenVersionsOnce(ctx, e.svc, vault.DefaultCardHistoryRetention, 2)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "one statement deletes one batch")
	n, err = postgres.PruneTokenVersionsInBatches(ctx, e.svc, vault.DefaultCardHistoryRetention, 2)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(3))
	versions, err = e.svc.ListTokenVersions(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	assert.Empty(t, versions)
}

func TestCardVersionsAreReencryptedAndHoldTheirKeyAgainstRetire(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.Tokenize(ctx, e.actor, cardOf("pm_keys", "4242424242424242", "04"))
	require.NoError(t, err)
	_, _, err = e.svc.Tokenize(ctx, e.actor, cardOf("pm_keys", "5555555555554444", "04"))
	require.NoError(t, err)
	oldKey := keyByState(e.keyStatus(t), "primary").KeyID
	newKey, err := e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	// Move the token itself, not its version: retire must still refuse.
	_, err = e.pool.Exec(ctx, `UPDATE tokens SET key_id = $2 WHERE tenant_id = $1`, e.actor.TenantID, int64(newKey))
	require.NoError(t, err)
	err = e.svc.RetireDataKey(ctx, e.actor, oldKey, false)
	assert.Equal(t, vault.CodeKeyInUse, vault.AsError(err).Code, "a card version still needs the old key: %v", err)

	job, _, err := e.svc.StartReencrypt(ctx, e.actor)
	require.NoError(t, err)
	_, err = e.svc.RunOneKeyJob(ctx, "worker", job.ID)
	require.NoError(t, err)
	var under int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM token_versions WHERE tenant_id = $1 AND key_id = $2`,
		e.actor.TenantID, int64(newKey)).Scan(&under))
	assert.Equal(t, 1, under, "the version was re-sealed under the new key")
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, oldKey, false))
}
