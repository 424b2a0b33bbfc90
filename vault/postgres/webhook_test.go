package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestSetWebhookChecksTheURL: a webhook URL is what the egress client sends
// to (https in any case, a DNS name), loopback hosts only where loopback
// egress is allowed, and never holds a card number; the message names the
// rule broken, not the URL.
func TestSetWebhookChecksTheURL(t *testing.T) {
	e := newWebhookEnv(t)
	dev := vaulttest.NewService(t, dbURL, vaulttest.Options{AllowLoopback: true})
	_, devSecret := vaulttest.Tenant(t, dev)
	devActor := vaulttest.Actor(t, dev, devSecret)
	long := "https://hooks.example.com/" + strings.Repeat("a", vault.MaxWebhookURLLen)
	for _, tc := range []struct {
		url       string
		prod, dev string // the code in production and with loopback allowed; "" when accepted
	}{
		{"https://hooks.example.com/cardvault", "", ""},
		{"https://hooks.example.com:8443/a?b=c", "", ""},
		{"HTTPS://Hooks.Example.com/upper", "", ""},
		{"https://127.0.0.1/x", "invalid_url", ""},
		{"http://127.0.0.1:9000/hook", "invalid_url", ""},
		{"http://[::1]:9000/hook", "invalid_url", ""},
		{"http://localhost/hook", "invalid_url", ""},
		{"http://LOCALHOST:1/hook", "invalid_url", ""},
		{"", "invalid_url", "invalid_url"},
		{"http://hooks.example.com/", "invalid_url", "invalid_url"},
		{"http://10.0.0.1/", "invalid_url", "invalid_url"},
		{"https://10.0.0.1/", "invalid_url", "invalid_url"},
		{"https://169.254.169.254/latest/meta-data", "invalid_url", "invalid_url"},
		{"https://hooks/", "invalid_url", "invalid_url"},
		{"ftp://hooks.example.com/", "invalid_url", "invalid_url"},
		{"hooks.example.com/path", "invalid_url", "invalid_url"},
		{"/relative", "invalid_url", "invalid_url"},
		{"https:opaque", "invalid_url", "invalid_url"},
		{"https://", "invalid_url", "invalid_url"},
		{"https://user:pass@hooks.example.com/", "invalid_url", "invalid_url"},
		{"https://user@hooks.example.com/", "invalid_url", "invalid_url"},
		{"https://hooks.example.com/#frag", "invalid_url", "invalid_url"},
		{"https://hooks.example.com:99999/", "invalid_url", "invalid_url"},
		{"https://hooks.example.com/a b", "invalid_url", "invalid_url"},
		{"https://hooks.example.com/\n", "invalid_string", "invalid_string"},
		{long, "string_too_long", "string_too_long"},
		{"https://hooks.example.com/cards/4242424242424242", "sensitive_data", "sensitive_data"},
		{"https://hooks.example.com/?pan=4242-4242-4242-4242", "sensitive_data", "sensitive_data"},
	} {
		for _, m := range []struct {
			name  string
			svc   *postgres.Service
			actor vault.Actor
			code  string
		}{{"production", e.svc, e.actor, tc.prod}, {"loopback allowed", dev, devActor, tc.dev}} {
			t.Run(m.name+" "+tc.url, func(t *testing.T) {
				wh, secret, err := m.svc.SetWebhook(context.Background(), m.actor, tc.url)
				if m.code == "" {
					require.NoError(t, err)
					scheme, rest, _ := strings.Cut(tc.url, "://")
					assert.Equal(t, strings.ToLower(scheme)+"://"+rest, wh.URL, "kept with its scheme in lower case")
					assert.Regexp(t, `^whsec_[A-Za-z0-9_-]{43}$`, secret)
					return
				}
				require.Error(t, err)
				ve := vault.AsError(err)
				assert.Equal(t, vault.KindInvalid, ve.Kind)
				assert.Equal(t, m.code, ve.Code)
				assert.Equal(t, "url", ve.Param)
				assert.NotContains(t, ve.Error(), "4242424242424242")
				assert.NotContains(t, ve.Error(), "hooks.example.com", "the message names the rule, not the URL")
			})
		}
	}
}

func TestWebhookSecretIsStoredSealedAndRotates(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, first, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	wh, second, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/b")
	require.NoError(t, err)
	assert.NotEqual(t, first, second, "a new URL comes with a new secret")
	assert.Equal(t, e.clock.Now().UTC(), wh.CreatedAt)

	var row string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT to_jsonb(w)::text FROM webhooks w WHERE tenant_id = $1`,
		e.actor.TenantID).Scan(&row))
	for _, secret := range []string{first, second} {
		assert.NotContains(t, row, secret)
		assert.NotContains(t, row, strings.TrimPrefix(secret, "whsec_"))
		assert.NotContains(t, row, hex.EncodeToString([]byte(secret)))
	}
	got, err := e.svc.GetWebhook(ctx, e.actor)
	require.NoError(t, err)
	assert.Equal(t, "https://hooks.example.com/b", got.URL)
	assert.Equal(t, []string{"webhook.set", "webhook.set", "webhook.read"}, tenantActions(t, e, "webhook."))
}

func TestGetAndDeleteWebhookWithoutOne(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, err := e.svc.GetWebhook(ctx, e.actor)
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(e.svc.DeleteWebhook(ctx, e.actor)))

	_, _, err = e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	other := e.otherActor(t)
	_, err = e.svc.GetWebhook(ctx, other)
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err), "another tenant's webhook is not there")
	require.NoError(t, e.svc.DeleteWebhook(ctx, e.actor))
	_, err = e.svc.GetWebhook(ctx, e.actor)
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
}

func TestTokenEventsAreEnqueuedOnlyWithAWebhook(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	e.tokenize(t, visa("pm_before"))
	require.NoError(t, postgres.EnqueueEvent(ctx, e.pool, e.actor.TenantID, vault.EventImportFinished, map[string]any{"id": "x"}))
	assert.Zero(t, countEvents(t, e), "a tenant without a webhook gets no event rows")

	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	tok, _ := e.tokenize(t, visa("pm_1"))
	e.tokenize(t, visa("pm_1")) // the same card again: no change, no event
	changed := visa("pm_1")
	changed.Card.ExpMonth = "05"
	e.tokenize(t, changed)
	require.NoError(t, e.svc.DeleteToken(ctx, e.actor, tok.ID))
	require.NoError(t, postgres.EnqueueEvent(ctx, e.pool, e.actor.TenantID, vault.EventImportFinished, map[string]any{"id": "job_1"}))
	other := e.otherActor(t)
	_, _, err = e.svc.Tokenize(ctx, other, visa("pm_other"))
	require.NoError(t, err)

	rows, err := e.pool.Query(ctx, `SELECT type, payload IS NULL, payload_ct IS NULL FROM webhook_events
		WHERE tenant_id = $1 ORDER BY seq`, e.actor.TenantID)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var typ string
		var noPayload, noCT bool
		require.NoError(t, rows.Scan(&typ, &noPayload, &noCT))
		got = append(got, fmt.Sprintf("%s plain=%v sealed=%v", typ, !noPayload, !noCT))
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{
		"token.created plain=false sealed=true",
		"token.updated plain=false sealed=true",
		"token.deleted plain=false sealed=true",
		"import.finished plain=true sealed=false",
	}, got)
	assert.Equal(t, 4, countEvents(t, e), "only the tenant with a webhook has events")
}

func TestTokenEventsHoldNoCardDataAtRest(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	const name = "Quentin Zyxwerth"
	in := visa("pm_rest")
	in.Card.Name = name
	tok, _ := e.tokenize(t, in)
	require.NoError(t, e.svc.DeleteToken(ctx, e.actor, tok.ID))

	var dump string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT string_agg(to_jsonb(e)::text, E'\n') FROM webhook_events e`).Scan(&dump))
	require.Contains(t, dump, "token.deleted")
	for _, secret := range []string{name, "4242424242424242", hex.EncodeToString([]byte(name)),
		hex.EncodeToString([]byte("4242424242424242")), `"123"`} {
		assert.NotContains(t, dump, secret)
	}
}

func TestClaimedEventsCarryTheMaskedRecordAndRespectLeases(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, secret, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	tok, _ := e.tokenize(t, visa("pm_claim"))

	claimed, err := e.svc.ClaimWebhookEvents(ctx, "a", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	ev := claimed[0]
	require.NoError(t, ev.Err)
	assert.Equal(t, secret, ev.Secret.Reveal())
	assert.Equal(t, "[REDACTED] [REDACTED]", fmt.Sprintf("%v %+v", ev.Secret, ev.Secret))
	assert.Equal(t, 1, ev.Attempt)
	var body struct {
		ID, Type, CreatedAt string
		Data                json.RawMessage
	}
	require.NoError(t, json.Unmarshal(ev.Body, &body))
	assert.Equal(t, ev.ID, body.ID)
	assert.Equal(t, "token.created", body.Type)
	want, err := json.Marshal(tok.Record())
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(body.Data))

	again, err := e.svc.ClaimWebhookEvents(ctx, "b", 10, time.Minute)
	require.NoError(t, err)
	assert.Empty(t, again, "a leased event is not claimed twice")
	e.clock.Advance(time.Minute)
	again, err = e.svc.ClaimWebhookEvents(ctx, "b", 10, time.Minute)
	require.NoError(t, err)
	assert.Len(t, again, 1, "an expired lease lets another deliverer take the event")

	// The first owner's late result is recorded but no longer moves the event.
	require.NoError(t, e.svc.RecordWebhookAttempt(ctx, "a", ev, vault.AttemptResult{At: e.clock.Now(), Status: 200, Delivered: true}))
	var delivered bool
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT delivered_at IS NOT NULL FROM webhook_events WHERE id = $1`, ev.ID).Scan(&delivered))
	assert.False(t, delivered)
}

func TestAWebhookURLChangedInTheDatabaseNoLongerOpensItsSecret(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	e.tokenize(t, visa("pm_tamper"))
	_, err = e.pool.Exec(ctx, `UPDATE webhooks SET url = 'https://attacker.example/' WHERE tenant_id = $1`, e.actor.TenantID)
	require.NoError(t, err)
	claimed, err := e.svc.ClaimWebhookEvents(ctx, "a", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	assert.Error(t, claimed[0].Err)
	assert.Nil(t, claimed[0].Body)
}

func TestWebhookRowsAreResealedUnderANewPrimaryKey(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, secret, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	e.tokenize(t, visa("pm_reseal"))
	var old int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT key_id FROM webhooks WHERE tenant_id = $1`, e.actor.TenantID).Scan(&old))
	primary, err := e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)

	n, err := postgres.WebhookRowsUnderKey(ctx, e.pool, e.actor.TenantID, uint32(old))
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "the secret and the pending event need the old key")
	resealed, err := postgres.ResealWebhookRows(ctx, e.svc, e.actor.TenantID)
	require.NoError(t, err)
	assert.Equal(t, 2, resealed)
	n, err = postgres.WebhookRowsUnderKey(ctx, e.pool, e.actor.TenantID, uint32(old))
	require.NoError(t, err)
	assert.Zero(t, n, "nothing needs the old key any more")
	n, err = postgres.WebhookRowsUnderKey(ctx, e.pool, e.actor.TenantID, primary)
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)

	claimed, err := e.svc.ClaimWebhookEvents(ctx, "a", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.NoError(t, claimed[0].Err)
	assert.Equal(t, secret, claimed[0].Secret.Reveal(), "the same secret, sealed anew")
	assert.Contains(t, string(claimed[0].Body), `"token.created"`)
}

func TestDeleteWebhookGivesUpPendingEvents(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	e.tokenize(t, visa("pm_pending"))
	require.NoError(t, e.svc.DeleteWebhook(ctx, e.actor))
	_, _, err = e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/b")
	require.NoError(t, err)
	claimed, err := e.svc.ClaimWebhookEvents(ctx, "a", 10, time.Minute)
	require.NoError(t, err)
	assert.Empty(t, claimed, "events of a deleted webhook do not go to its successor")
}

func TestListWebhookDeliveries(t *testing.T) {
	e := newWebhookEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/a")
	require.NoError(t, err)
	for i := range 3 {
		e.tokenize(t, visa(fmt.Sprintf("pm_list_%d", i)))
	}
	claimed, err := e.svc.ClaimWebhookEvents(ctx, "a", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	for i, ev := range claimed {
		r := vault.AttemptResult{At: e.clock.Now(), Status: 500 + i, Duration: 1500 * time.Microsecond,
			RetryAt: e.clock.Now().Add(time.Minute)}
		require.NoError(t, e.svc.RecordWebhookAttempt(ctx, "a", ev, r))
	}
	page, err := e.svc.ListWebhookDeliveries(ctx, e.actor, 2, 0)
	require.NoError(t, err)
	require.Len(t, page.Deliveries, 2)
	assert.True(t, page.HasMore)
	assert.Equal(t, claimed[2].ID, page.Deliveries[0].EventID, "newest first")
	assert.Equal(t, 502, page.Deliveries[0].Status)
	assert.Equal(t, vault.OutcomeRetrying, page.Deliveries[0].Outcome)
	assert.Equal(t, vault.EventTokenCreated, page.Deliveries[0].EventType)
	assert.Equal(t, time.Millisecond, page.Deliveries[0].Duration)
	rest, err := e.svc.ListWebhookDeliveries(ctx, e.actor, 2, page.Deliveries[1].ID)
	require.NoError(t, err)
	require.Len(t, rest.Deliveries, 1)
	assert.False(t, rest.HasMore)
	assert.Equal(t, claimed[0].ID, rest.Deliveries[0].EventID)

	other, err := e.svc.ListWebhookDeliveries(ctx, e.otherActor(t), 10, 0)
	require.NoError(t, err)
	assert.Empty(t, other.Deliveries, "a tenant sees only its own deliveries")
	_, err = e.svc.ListWebhookDeliveries(ctx, e.actor, 0, 0)
	assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err))
}

// newWebhookEnv is newEnv on emptied tables: the outbox is shared by every
// tenant, and claims look at all of it.
func newWebhookEnv(t *testing.T) *env {
	t.Helper()
	vaulttest.Truncate(t, vaulttest.Pool(t, dbURL))
	return newEnv(t)
}

// countEvents counts every webhook event row.
func countEvents(t *testing.T, e *env) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_events`).Scan(&n))
	return n
}

// tenantActions returns the actor's tenant's audited actions starting with
// prefix, oldest first.
func tenantActions(t *testing.T, e *env, prefix string) []string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT action FROM audit_events
		WHERE tenant_id = $1 AND starts_with(action, $2) ORDER BY id`, e.actor.TenantID, prefix)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var a string
		require.NoError(t, rows.Scan(&a))
		out = append(out, a)
	}
	require.NoError(t, rows.Err())
	return out
}

// BenchmarkTokenize compares a tokenization with a plain INSERT of a
// token-shaped row (one commit each), at the bench's parallelism (32
// goroutines): the round trips the vault adds on its hot path show in the
// ratio of the two. "tokenize-webhook" is a tenant with a webhook, whose
// every tokenization also writes a sealed token.created event. Run:
// go test ./vault/postgres -run '^$' -bench Tokenize.
func BenchmarkTokenize(b *testing.B) {
	svc := vaulttest.NewService(b, dbURL, vaulttest.Options{})
	pool := vaulttest.Pool(b, dbURL)
	b.Run("baseline-insert", func(b *testing.B) {
		tenant, _ := vaulttest.Tenant(b, svc)
		blob := func(n int) []byte { p := make([]byte, n); _, _ = rand.Read(p); return p }
		b.SetParallelism(16) // × GOMAXPROCS 2 = 32 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, err := pool.Exec(context.Background(), `INSERT INTO tokens (id, tenant_id, business_key,
					fingerprint, fingerprint_key_id, key_id, pan_ct, name_ct, cvc_ct, cvc_expires_at, iin, last_four,
					pan_length, scheme, exp_month, exp_year, metadata, created_at, updated_at)
					VALUES ($1, $2, $3, $4, 1, 1, $5, $6, $7, $8, '424242', '4242', 16, 'VISA', 4, 2033, '{}', $8, $8)`,
					uuid.New(), tenant, "pm_"+uuid.NewString(), blob(32), blob(49), blob(41), blob(36), time.Now())
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("tokenize", func(b *testing.B) { benchTokenize(b, svc, vaulttest.Actor(b, svc, tenantSecret(b, svc))) })
	b.Run("tokenize-webhook", func(b *testing.B) {
		a := vaulttest.Actor(b, svc, tenantSecret(b, svc))
		if _, _, err := svc.SetWebhook(context.Background(), a, "https://hooks.example.com/bench"); err != nil {
			b.Fatal(err)
		}
		benchTokenize(b, svc, a)
	})
}

func tenantSecret(b *testing.B, svc *postgres.Service) string {
	_, secret := vaulttest.Tenant(b, svc)
	return secret
}

// benchTokenize tokenizes distinct cards under distinct business keys as a.
func benchTokenize(b *testing.B, svc *postgres.Service, a vault.Actor) {
	var n atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			in := vault.TokenizeInput{BusinessKey: fmt.Sprintf("pm_bench_%s_%d", a.TenantID, i), Card: card.CardInput{
				Number: vaulttest.LuhnNumber("424242", 16, i), ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "John Doe"}}
			if _, _, err := svc.Tokenize(context.Background(), a, in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
