package postgres_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// withNumber returns a tokenize input of number under businessKey.
func withNumber(businessKey, number string) vault.TokenizeInput {
	in := visa(businessKey)
	in.Card.Number = number
	return in
}

// ids returns the ids of a page's tokens, in order.
func ids(p vault.TokenPage) []uuid.UUID {
	out := make([]uuid.UUID, len(p.Tokens))
	for i, t := range p.Tokens {
		out[i] = t.ID
	}
	return out
}

func TestSearchTokensFindsEveryTokenHoldingTheCard(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first, _ := e.tokenize(t, withNumber("pm_a", "4242424242424242"))
	e.clock.Advance(time.Second)
	second, _ := e.tokenize(t, withNumber("", "4242 4242 4242 4242"))
	e.tokenize(t, withNumber("pm_c", "5555555555554444"))
	other := e.otherActor(t)
	_, _, err := e.svc.Tokenize(ctx, other, withNumber("pm_a", "4242424242424242"))
	require.NoError(t, err)

	tests := []struct {
		name, number string
		want         []uuid.UUID
	}{
		{"digits", "4242424242424242", []uuid.UUID{second.ID, first.ID}},
		{"spaced and dashed", "4242-4242 4242-4242", []uuid.UUID{second.ID, first.ID}},
		{"a card the tenant does not hold", "4000056655665556", []uuid.UUID{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := e.svc.SearchTokens(ctx, e.actor, card.NewSecret(tt.number), 10, uuid.Nil)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ids(page), "newest first, this tenant's only")
			assert.False(t, page.HasMore)
		})
	}
	t.Run("pages", func(t *testing.T) {
		page, err := e.svc.SearchTokens(ctx, e.actor, card.NewSecret("4242424242424242"), 1, uuid.Nil)
		require.NoError(t, err)
		assert.Equal(t, []uuid.UUID{second.ID}, ids(page))
		assert.True(t, page.HasMore)
		page, err = e.svc.SearchTokens(ctx, e.actor, card.NewSecret("4242424242424242"), 1, second.ID)
		require.NoError(t, err)
		assert.Equal(t, []uuid.UUID{first.ID}, ids(page))
		assert.False(t, page.HasMore)
	})
	t.Run("the fingerprint filter finds the same tokens", func(t *testing.T) {
		page, err := e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Fingerprint: first.Fingerprint, Limit: 10})
		require.NoError(t, err)
		assert.Equal(t, []uuid.UUID{second.ID, first.ID}, ids(page))
		page, err = e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Fingerprint: first.Fingerprint, BusinessKey: "pm_a", Limit: 10})
		require.NoError(t, err)
		assert.Equal(t, []uuid.UUID{first.ID}, ids(page), "both filters apply")
	})
}

func TestSearchTokensRefusesWhatIsNotACardNumber(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ name, number, code string }{
		{"empty", "", vault.CodeInvalidNumber},
		{"letters", "4242x", vault.CodeInvalidNumber},
		{"too short", "42424242", vault.CodeInvalidNumber},
		{"Luhn-broken", "4242424242424241", vault.CodeIncorrectNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.SearchTokens(context.Background(), e.actor, card.NewSecret(tt.number), 10, uuid.Nil)
			ve := vault.AsError(err)
			require.NotNil(t, ve)
			assert.Equal(t, vault.KindInvalid, ve.Kind)
			assert.Equal(t, tt.code, ve.Code)
			assert.Equal(t, "number", ve.Param)
			assert.NotContains(t, ve.Error(), "4242424242424241")
		})
	}
	_, err := e.svc.SearchTokens(context.Background(), e.actor, card.NewSecret("4242424242424242"), 101, uuid.Nil)
	assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err), "limit 1-100")
}

func TestSearchTokensAuditsWithoutTheNumber(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, withNumber("pm_audit", "6011111111111117"))
	a := e.actor
	a.RequestID = "req_search_audit"
	_, err := e.svc.SearchTokens(ctx, a, card.NewSecret("6011 1111 1111 1117"), 10, uuid.Nil)
	require.NoError(t, err)

	var detail string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail::text FROM audit_events
		WHERE request_id = $1 AND action = $2`, a.RequestID, string(vault.ActionTokenSearch)).Scan(&detail))
	assert.JSONEq(t, `{"count":1}`, detail)

	rows, err := e.pool.Query(ctx, `SELECT to_jsonb(a)::text FROM audit_events a WHERE tenant_id = $1`, a.TenantID)
	require.NoError(t, err)
	trail, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	joined := strings.Join(trail, "\n")
	for _, form := range []string{"6011111111111117", "6011 1111 1111 1117", "111111"} {
		assert.NotContains(t, joined, form, "the searched number is never audited")
	}
}

// TestCardLookupsUseTheFingerprintHashIndex: tokens are found by card
// through tokens_fingerprint_hash (migration 025), a hash index whose
// inserts touch half the pages a B-tree of the random fingerprints did.
func TestCardLookupsUseTheFingerprintHashIndex(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, withNumber("pm_hash", "4242424242424242"))
	_, err := e.pool.Exec(ctx, `INSERT INTO tokens (id, tenant_id, business_key, fingerprint, fingerprint_key_id, key_id,
		pan_ct, iin, last_four, pan_length, scheme, exp_month, exp_year, metadata, created_at, updated_at)
		SELECT gen_random_uuid(), tenant_id, 'pm_fill' || g, sha256(g::text::bytea), fingerprint_key_id, key_id, pan_ct, iin,
		       last_four, pan_length, scheme, exp_month, exp_year, metadata, created_at, updated_at
		FROM tokens, generate_series(1, 5000) g WHERE id = $1`, tok.ID)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `ANALYZE tokens`)
	require.NoError(t, err)

	var method string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam
		WHERE c.relname = 'tokens_fingerprint_hash'`).Scan(&method))
	assert.Equal(t, "hash", method)
	rows, err := e.pool.Query(ctx, `EXPLAIN SELECT id FROM tokens WHERE tenant_id = '`+e.actor.TenantID.String()+
		`' AND fingerprint = '\x`+hex.EncodeToString(tok.Fingerprint)+`'`)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Contains(t, strings.Join(plan, "\n"), "tokens_fingerprint_hash", "a lookup by card probes the hash index")
	page, err := e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Fingerprint: tok.Fingerprint, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, []uuid.UUID{tok.ID}, ids(page))
}
