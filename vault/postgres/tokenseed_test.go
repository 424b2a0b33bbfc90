package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// TestSeededTokensAreRealTokens: tokens written by SeedTokens are sealed
// like any other: they list, read and reveal their own card, and a replay
// of a seeded card answers the seeded token; their CVCs' expiries are
// queued; seeded audit rows are chained
// when SeedAuditEvents returns.
func TestSeededTokensAreRealTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	numbers := []string{"4242424242424242", "5555555555554444", "378282246310005"}
	cardOf := func(i int) vault.TokenizeInput {
		return vault.TokenizeInput{BusinessKey: fmt.Sprintf("pm_seed%d", i), Card: card.CardInput{
			Number: numbers[i%len(numbers)], ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "John Doe"}}
	}
	require.NoError(t, e.svc.SeedTokens(ctx, e.actor.TenantID, 7, cardOf))
	page, err := e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Limit: 100})
	require.NoError(t, err)
	require.Len(t, page.Tokens, 7)
	var ids []uuid.UUID
	for _, tok := range page.Tokens {
		ids = append(ids, tok.ID)
	}
	assert.Equal(t, 7, e.queuedCVCs(t, ids...), "each seeded CVC's expiry is queued for the sweeper")
	for _, tok := range page.Tokens {
		var i int
		_, err := fmt.Sscanf(tok.BusinessKey, "pm_seed%d", &i)
		require.NoError(t, err)
		out, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
		require.NoError(t, err)
		assert.Equal(t, numbers[i%len(numbers)], out.Card.PAN.Reveal())
	}
	again, created := e.tokenize(t, cardOf(3))
	assert.False(t, created)
	assert.Equal(t, "pm_seed3", again.BusinessKey)

	var before int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1`, e.actor.TenantID).Scan(&before))
	require.NoError(t, e.svc.SeedAuditEvents(ctx, e.actor.TenantID, 120))
	var n, unchained int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE chain_seq IS NULL)
		FROM audit_events WHERE tenant_id = $1`, e.actor.TenantID).Scan(&n, &unchained))
	assert.Equal(t, before+120, n)
	assert.Zero(t, unchained)
	r, err := e.svc.VerifyAudit(ctx, &e.actor.TenantID)
	require.NoError(t, err)
	assert.True(t, r.OK, "%+v", r.Breaks)
}
