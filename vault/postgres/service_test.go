package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "vault", &dbURL) }

// env is one test's vault: a service on the package database, a settable
// clock and an actor of a fresh tenant holding every scope.
type env struct {
	svc    *postgres.Service
	pool   *pgxpool.Pool
	clock  *vaulttest.Clock
	actor  vault.Actor
	secret string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: clock.Now, CVCTTL: time.Hour})
	_, secret := vaulttest.Tenant(t, svc)
	return &env{svc: svc, pool: vaulttest.Pool(t, dbURL), clock: clock, actor: vaulttest.Actor(t, svc, secret), secret: secret}
}

// otherActor returns an actor of another, fresh tenant.
func (e *env) otherActor(t *testing.T) vault.Actor {
	t.Helper()
	_, secret := vaulttest.Tenant(t, e.svc)
	return vaulttest.Actor(t, e.svc, secret)
}

func visa(businessKey string) vault.TokenizeInput {
	return vault.TokenizeInput{BusinessKey: businessKey, Card: card.CardInput{
		Number: "4242424242424242", ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "John Doe"}}
}

func (e *env) tokenize(t *testing.T, in vault.TokenizeInput) (vault.Token, bool) {
	t.Helper()
	tok, created, err := e.svc.Tokenize(context.Background(), e.actor, in)
	require.NoError(t, err)
	return tok, created
}

// auditActions returns the actions audited for a token, oldest first.
func (e *env) auditActions(t *testing.T, tokenID uuid.UUID) []string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(),
		`SELECT action FROM audit_events WHERE token_id = $1 ORDER BY id`, tokenID)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		out = append(out, a)
	}
	return out
}

func TestTokenizeReturnsMaskedRecord(t *testing.T) {
	e := newEnv(t)
	tok, created := e.tokenize(t, visa("pm_1"))
	assert.True(t, created)
	assert.Equal(t, "424242******4242", tok.MaskedAccountNumber())
	assert.Equal(t, card.SchemeVisa, tok.Scheme)
	assert.Equal(t, "pm_1", tok.BusinessKey)
	assert.Equal(t, "John Doe", tok.CardholderName)
	assert.Equal(t, 4, tok.ExpiryMonth)
	assert.Equal(t, 2033, tok.ExpiryYear)
	assert.Equal(t, 16, tok.PANLength)
	assert.True(t, tok.CVCAvailable)
	assert.Equal(t, e.clock.Now(), tok.CreatedAt)
	assert.Equal(t, []string{"token.create"}, e.auditActions(t, tok.ID))
}

func TestTokenizeIdempotentOnBusinessKey(t *testing.T) {
	e := newEnv(t)
	first, _ := e.tokenize(t, visa("pm_same"))
	again, created := e.tokenize(t, visa("pm_same"))
	assert.False(t, created)
	assert.Equal(t, first.ID, again.ID)
	assert.Equal(t, first.UpdatedAt, again.UpdatedAt)

	a, _ := e.tokenize(t, visa(""))
	b, created := e.tokenize(t, visa(""))
	assert.True(t, created, "without a business key every call makes a token")
	assert.NotEqual(t, a.ID, b.ID)
	assert.Equal(t, a.Fingerprint, b.Fingerprint, "one card, one fingerprint within a tenant")
}

func TestTokenizeAccountUpdaterReplacesCard(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*vault.TokenizeInput)
		changed []any
	}{
		{"new expiry", func(in *vault.TokenizeInput) { in.Card.ExpYear = "2035" }, []any{"expiry"}},
		{"new number", func(in *vault.TokenizeInput) { in.Card.Number = "5555555555554444" }, []any{"number"}},
		{"new name", func(in *vault.TokenizeInput) { in.Card.Name = "Jane Doe" }, []any{"name"}},
		{"new metadata", func(in *vault.TokenizeInput) { in.Metadata = map[string]string{"k": "v"} }, []any{"metadata"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			first, _ := e.tokenize(t, visa("pm_upd"))
			e.clock.Advance(time.Minute)
			in := visa("pm_upd")
			tt.change(&in)
			updated, created := e.tokenize(t, in)
			assert.False(t, created)
			assert.Equal(t, first.ID, updated.ID)
			assert.Equal(t, first.CreatedAt, updated.CreatedAt)
			assert.Equal(t, first.CreatedAt.Add(time.Minute), updated.UpdatedAt)
			assert.Equal(t, []string{"token.create", "token.update"}, e.auditActions(t, first.ID))
			assert.Equal(t, tt.changed, lastDetail(t, e, first.ID)["changed"])

			r, err := e.svc.Detokenize(context.Background(), e.actor, first.ID, "")
			require.NoError(t, err)
			assert.Equal(t, in.Card.Number, r.Card.PAN.Reveal())
			assert.Equal(t, in.Card.Name, r.Card.Name)
		})
	}
}

func lastDetail(t *testing.T, e *env, tokenID uuid.UUID) map[string]any {
	t.Helper()
	var d map[string]any
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT detail FROM audit_events WHERE token_id = $1 ORDER BY id DESC LIMIT 1`, tokenID).Scan(&d))
	return d
}

func TestConcurrentFirstImportsMakeOneToken(t *testing.T) {
	e := newEnv(t)
	const n = 16
	var wg sync.WaitGroup
	ids := make([]uuid.UUID, n)
	created := make([]bool, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var tok vault.Token
			tok, created[i], errs[i] = e.svc.Tokenize(context.Background(), e.actor, visa("pm_race"))
			ids[i] = tok.ID
		}()
	}
	close(start)
	wg.Wait()
	creators := 0
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, ids[0], ids[i])
		if created[i] {
			creators++
		}
	}
	assert.Equal(t, 1, creators)
	var count int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM tokens WHERE tenant_id = $1 AND business_key = 'pm_race'`, e.actor.TenantID).Scan(&count))
	assert.Equal(t, 1, count)
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.tokenize(t, visa("pm_iso"))
	other := e.otherActor(t)
	ctx := context.Background()

	_, err := e.svc.GetToken(ctx, other, tok.ID)
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
	_, errUnknown := e.svc.GetToken(ctx, other, uuid.New())
	assert.Equal(t, vault.AsError(errUnknown).Message, vault.AsError(err).Message, "foreign and unknown ids look alike")
	_, err = e.svc.Detokenize(ctx, other, tok.ID, "")
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(e.svc.DeleteToken(ctx, other, tok.ID)))
	page, err := e.svc.ListTokens(ctx, other, vault.ListTokensParams{Limit: 100, BusinessKey: "pm_iso"})
	require.NoError(t, err)
	assert.Empty(t, page.Tokens)

	// The same business key in another tenant is another token.
	theirs, created, err := e.svc.Tokenize(ctx, other, visa("pm_iso"))
	require.NoError(t, err)
	assert.True(t, created)
	assert.NotEqual(t, tok.ID, theirs.ID)
	assert.NotEqual(t, tok.Fingerprint, theirs.Fingerprint, "fingerprint keys are per tenant")
}

func TestDetokenizeRevealsCVCOnce(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.tokenize(t, visa("pm_cvc"))
	ctx := context.Background()
	first, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "first charge")
	require.NoError(t, err)
	assert.Equal(t, "4242424242424242", first.Card.PAN.Reveal())
	assert.Equal(t, "123", first.Card.CVC.Reveal())
	assert.Equal(t, card.Expiry{Month: 4, Year: 2033}, first.Card.Expiry)

	second, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	assert.True(t, second.Card.CVC.IsZero(), "the first reveal consumes the CVC")
	got, err := e.svc.GetToken(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	assert.False(t, got.CVCAvailable)
	assert.Equal(t, "first charge", revealReason(t, e, tok.ID))
}

func revealReason(t *testing.T, e *env, tokenID uuid.UUID) string {
	t.Helper()
	var reason *string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT detail->>'reason' FROM audit_events
		WHERE token_id = $1 AND action = 'token.reveal' ORDER BY id LIMIT 1`, tokenID).Scan(&reason))
	require.NotNil(t, reason)
	return *reason
}

func TestCVCExpiresAfterTTL(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.tokenize(t, visa("pm_ttl"))
	ctx := context.Background()
	e.clock.Advance(time.Hour + time.Second)

	got, err := e.svc.GetToken(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	assert.False(t, got.CVCAvailable, "an expired CVC is unavailable before the sweep")

	n, err := e.svc.PurgeExpiredCVCs(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(1))
	var remaining int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE id = $1 AND cvc_ct IS NOT NULL`, tok.ID).Scan(&remaining))
	assert.Zero(t, remaining, "the sweeper destroys the ciphertext")
	var purges int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'cvc.purge'`,
		e.actor.TenantID).Scan(&purges))
	assert.Equal(t, 1, purges)
	r, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	assert.True(t, r.Card.CVC.IsZero())
}

func TestDeleteToken(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.tokenize(t, visa("pm_del"))
	ctx := context.Background()
	require.NoError(t, e.svc.DeleteToken(ctx, e.actor, tok.ID))
	_, err := e.svc.GetToken(ctx, e.actor, tok.ID)
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(e.svc.DeleteToken(ctx, e.actor, tok.ID)))
	assert.Equal(t, []string{"token.create", "token.delete"}, e.auditActions(t, tok.ID), "the audit trail stays")
	var rows int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE id = $1`, tok.ID).Scan(&rows))
	assert.Zero(t, rows)
}

func TestListTokensPagesNewestFirst(t *testing.T) {
	e := newEnv(t)
	var ids []uuid.UUID
	for _, bk := range []string{"pm_a", "pm_b", "pm_c", "pm_d", "pm_e"} {
		tok, _ := e.tokenize(t, visa(bk))
		ids = append([]uuid.UUID{tok.ID}, ids...)
		e.clock.Advance(time.Second)
	}
	ctx := context.Background()
	var seen []uuid.UUID
	after := uuid.Nil
	for {
		page, err := e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Limit: 2, StartingAfter: after})
		require.NoError(t, err)
		for _, tok := range page.Tokens {
			seen = append(seen, tok.ID)
		}
		if !page.HasMore {
			break
		}
		after = page.Tokens[len(page.Tokens)-1].ID
	}
	assert.Equal(t, ids, seen)

	page, err := e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Limit: 10, BusinessKey: "pm_c"})
	require.NoError(t, err)
	require.Len(t, page.Tokens, 1)
	assert.Equal(t, "pm_c", page.Tokens[0].BusinessKey)

	_, err = e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Limit: 10, StartingAfter: uuid.New()})
	assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err))
	_, err = e.svc.ListTokens(ctx, e.actor, vault.ListTokensParams{Limit: 101})
	assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err))
}

func TestTokenizeRejectsCardDataInAttributes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		in    func() vault.TokenizeInput
		param string
	}{
		{"PAN as business key", func() vault.TokenizeInput { return visa("4242424242424242") }, "metadata.business_key"},
		{"PAN with spaces in metadata", func() vault.TokenizeInput {
			in := visa("pm_x")
			in.Metadata = map[string]string{"note": "card 4242 4242 4242 4242"}
			return in
		}, "metadata.note"},
		{"too many metadata keys", func() vault.TokenizeInput {
			in := visa("pm_x")
			in.Metadata = map[string]string{}
			for i := range 51 {
				in.Metadata[uuid.NewString()[:8]+string(rune('a'+i%26))] = "v"
			}
			return in
		}, "metadata"},
		{"control character", func() vault.TokenizeInput { return visa("pm_\x00") }, "metadata.business_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.svc.Tokenize(context.Background(), e.actor, tt.in())
			require.Error(t, err)
			ve := vault.AsError(err)
			assert.Equal(t, vault.KindInvalid, ve.Kind)
			assert.Equal(t, tt.param, ve.Param)
			assert.NotContains(t, ve.Message, "4242424242424242")
		})
	}
}

// TestTokenizeTakesUUIDsWhoseDigitsPassForACardNumber: a merchant's own
// UUID as a business key or a metadata value is stored, even one whose
// digit groups joined by '-' pass for a card number (about 1 % of random
// UUIDs), while a card number elsewhere in the same value is refused.
func TestTokenizeTakesUUIDsWhoseDigitsPassForACardNumber(t *testing.T) {
	e := newEnv(t)
	in := visa(passesForAPAN)
	in.Metadata = map[string]string{"order": passesForAPAN}
	tok, created := e.tokenize(t, in)
	assert.True(t, created)
	assert.Equal(t, passesForAPAN, tok.BusinessKey)
	assert.Equal(t, passesForAPAN, tok.Metadata["order"])

	in = visa("pm_uuid_and_card")
	in.Metadata = map[string]string{"order": passesForAPAN + " 4242 4242 4242 4242"}
	_, _, err := e.svc.Tokenize(context.Background(), e.actor, in)
	assert.Equal(t, "metadata.order", vault.AsError(err).Param, "the card number beside the UUID is refused")
}

func TestCiphertextIsBoundToItsRow(t *testing.T) {
	e := newEnv(t)
	a, _ := e.tokenize(t, visa("pm_row_a"))
	in := visa("pm_row_b")
	in.Card.Number = "5555555555554444"
	b, _ := e.tokenize(t, in)
	ctx := context.Background()
	// An attacker with database access moves b's sealed PAN into a's row.
	_, err := e.pool.Exec(ctx, `UPDATE tokens SET pan_ct = (SELECT pan_ct FROM tokens WHERE id = $2) WHERE id = $1`, a.ID, b.ID)
	require.NoError(t, err)
	_, err = e.svc.Detokenize(ctx, e.actor, a.ID, "")
	assert.Equal(t, vault.KindInternal, vault.ErrorKind(err), "a moved ciphertext must not open")
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tenantID, secret := vaulttest.Tenant(t, e.svc, vault.ScopeTokensRead)
	keys, err := e.svc.ListAPIKeys(ctx, tenantID)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	_, revokedSecret := vaulttest.Tenant(t, e.svc)
	revoked := vaulttest.Actor(t, e.svc, revokedSecret)
	_, err = e.svc.RevokeAPIKey(ctx, revoked.APIKeyID)
	require.NoError(t, err)

	tests := []struct {
		name, secret, reason string
	}{
		{"missing", "", "missing_key"},
		{"malformed", "sk_live_nope", "malformed_key"},
		{"unknown prefix", "cvk_0000000000000000_" + secret[len(secret)-43:], "unknown_key"},
		{"wrong secret", secret[:len(secret)-43] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "wrong_secret"},
		{"revoked", revokedSecret, "revoked_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Authenticate(ctx, tt.secret, "req_"+tt.reason, "192.0.2.1")
			assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
			require.NoError(t, e.svc.FlushAccessFailures(ctx))
			var reason string
			require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail->>'reason' FROM audit_events
				WHERE request_id = $1 AND action = 'auth.failed' AND outcome = 'failure'`, "req_"+tt.reason).Scan(&reason))
			assert.Equal(t, tt.reason, reason)
		})
	}
	a, err := e.svc.Authenticate(ctx, secret, "req_ok", "192.0.2.1")
	require.NoError(t, err)
	assert.Equal(t, tenantID, a.TenantID)
	assert.Equal(t, keys[0].ID, a.APIKeyID)
	assert.True(t, a.Can(vault.ScopeTokensRead))
	assert.False(t, a.Can(vault.ScopeTokensReveal))
	assert.Equal(t, vault.KindForbidden, vault.ErrorKind(e.svc.Require(ctx, a, vault.ScopeTokensReveal)))
}
