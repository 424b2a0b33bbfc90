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

// TestNewTokensGetTimeOrderedIDsAndOldIDsKeepWorking: a new token's id is a
// UUIDv7, later tokens sort after earlier ones; a token stored under a
// random (v4) id, as before, still reads, reveals, lists and pages, and a
// replay of its card still answers it.
func TestNewTokensGetTimeOrderedIDsAndOldIDsKeepWorking(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	oldID, err := postgres.TokenizeWithRandomID(ctx, e.svc, e.actor, visa("pm_v4"))
	require.NoError(t, err)
	require.Equal(t, uuid.Version(4), oldID.Version())

	a, _ := e.tokenize(t, visa("pm_v7a"))
	b, _ := e.tokenize(t, visa("pm_v7b"))
	assert.Equal(t, uuid.Version(7), a.ID.Version())
	assert.Equal(t, uuid.Version(7), b.ID.Version())
	assert.Negative(t, compareIDs(a.ID, b.ID), "a later token sorts after an earlier one")

	got, err := e.svc.GetToken(ctx, e.actor, oldID)
	require.NoError(t, err)
	assert.Equal(t, "pm_v4", got.BusinessKey)
	out, err := e.svc.Detokenize(ctx, e.actor, oldID, "")
	require.NoError(t, err)
	assert.Equal(t, "4242424242424242", out.Card.PAN.Reveal())
	again, created := e.tokenize(t, visa("pm_v4"))
	assert.False(t, created)
	assert.Equal(t, oldID, again.ID)

	var seen []uuid.UUID
	var after uuid.UUID
	for {
		page, err := e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Limit: 1, StartingAfter: after})
		require.NoError(t, err)
		for _, tk := range page.Tokens {
			seen = append(seen, tk.ID)
			after = tk.ID
		}
		if !page.HasMore {
			break
		}
	}
	assert.ElementsMatch(t, []uuid.UUID{oldID, a.ID, b.ID}, seen, "pages of mixed ids hold every token once")
}

// compareIDs compares two ids as bytes.
func compareIDs(a, b uuid.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}
