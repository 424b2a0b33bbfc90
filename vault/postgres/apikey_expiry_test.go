package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// issue makes an API key of the env's tenant expiring after expiresIn (never
// when zero) and returns its secret and record.
func (e *env) issue(t *testing.T, expiresIn time.Duration) (string, vault.APIKey) {
	t.Helper()
	secret, k, err := e.svc.IssueAPIKey(context.Background(), vault.NewAPIKey{
		TenantID: e.actor.TenantID, Scopes: []vault.Scope{vault.ScopeTokensRead}, Description: "expiry", ExpiresIn: expiresIn})
	require.NoError(t, err)
	return secret, k
}

// authFailure returns the audited reason of the failed authentication of
// request reqID.
func (e *env) authFailure(t *testing.T, reqID string) string {
	t.Helper()
	require.NoError(t, e.svc.FlushAccessFailures(context.Background()))
	var reason string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT detail->>'reason' FROM audit_events
		WHERE request_id = $1 AND action = 'auth.failed' AND outcome = 'failure'`, reqID).Scan(&reason))
	return reason
}

func TestAnAPIKeyIsRefusedFromItsExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	secret, k := e.issue(t, 90*24*time.Hour)
	require.NotNil(t, k.ExpiresAt)
	assert.Equal(t, e.clock.Now().Add(90*24*time.Hour), *k.ExpiresAt)
	forever, _ := e.issue(t, 0)

	_, err := e.svc.Authenticate(ctx, secret, "req_before_expiry", "127.0.0.1")
	require.NoError(t, err, "valid until it expires (and now remembered)")

	e.clock.Advance(90*24*time.Hour - time.Microsecond)
	_, err = e.svc.Authenticate(ctx, secret, "req_just_before", "127.0.0.1")
	require.NoError(t, err)

	e.clock.Advance(time.Microsecond)
	_, err = e.svc.Authenticate(ctx, secret, "req_expired", "127.0.0.1")
	assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err), "refused at its expiry, even while remembered")
	assert.Equal(t, "expired_key", e.authFailure(t, "req_expired"))

	_, err = e.svc.Authenticate(ctx, forever, "req_forever", "127.0.0.1")
	assert.NoError(t, err, "a key without expiry keeps working")

	keys, err := e.svc.ListAPIKeys(ctx, e.actor.TenantID)
	require.NoError(t, err)
	for _, l := range keys {
		if l.ID == k.ID {
			require.NotNil(t, l.ExpiresAt)
			assert.True(t, l.Expired(e.clock.Now()))
		}
	}
}

func TestAnAPIKeyLifetimeMustBePositive(t *testing.T) {
	e := newEnv(t)
	_, _, err := e.svc.IssueAPIKey(context.Background(), vault.NewAPIKey{
		TenantID: e.actor.TenantID, Scopes: []vault.Scope{vault.ScopeTokensRead}, ExpiresIn: -time.Hour})
	ve := vault.AsError(err)
	require.NotNil(t, ve)
	assert.Equal(t, vault.KindInvalid, ve.Kind)
	assert.Equal(t, vault.CodeInvalidExpiry, ve.Code)
}

// lastUse returns the key's last_used_at and the row version (xmin), which
// every write of the row changes, even one writing the same value.
func (e *env) lastUse(t *testing.T, id uuid.UUID) (*time.Time, string) {
	t.Helper()
	var at *time.Time
	var xmin string
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT last_used_at, xmin::text FROM api_keys WHERE id = $1`, id).Scan(&at, &xmin))
	return at, xmin
}

func TestLastUsedIsWrittenAtMostOnceAMinutePerKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	secret, k := e.issue(t, 0)
	at, _ := e.lastUse(t, k.ID)
	assert.Nil(t, at, "never used yet")

	auth := func(n int) {
		t.Helper()
		for range n {
			_, err := e.svc.Authenticate(ctx, secret, "req_use", "127.0.0.1")
			require.NoError(t, err)
		}
	}
	start := e.clock.Now()
	auth(1)
	at, version := e.lastUse(t, k.ID)
	require.NotNil(t, at)
	assert.Equal(t, start, at.UTC())

	e.clock.Advance(30 * time.Second)
	auth(50)
	e.clock.Advance(29 * time.Second)
	auth(50)
	at2, version2 := e.lastUse(t, k.ID)
	assert.Equal(t, start, at2.UTC(), "within the minute the first use stands")
	assert.Equal(t, version, version2, "and the row was not written at all: 100 requests, no write")

	e.clock.Advance(time.Second)
	auth(20)
	at3, version3 := e.lastUse(t, k.ID)
	assert.Equal(t, start.Add(time.Minute), at3.UTC(), "a minute on, one write")
	assert.NotEqual(t, version2, version3)

	keys, err := e.svc.ListAPIKeys(ctx, e.actor.TenantID)
	require.NoError(t, err)
	for _, l := range keys {
		if l.ID == k.ID {
			require.NotNil(t, l.LastUsedAt)
			assert.Equal(t, start.Add(time.Minute), l.LastUsedAt.UTC())
		}
	}
}

func TestListTenantsCountsLiveKeysAndTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, visa("pm_list_1"))
	e.tokenize(t, visa("pm_list_2"))
	e.issue(t, time.Hour)
	_, revoked := e.issue(t, 0)
	_, err := e.svc.RevokeAPIKey(ctx, revoked.ID)
	require.NoError(t, err)

	tenants, err := e.svc.ListTenants(ctx)
	require.NoError(t, err)
	var found *vault.TenantSummary
	for i, ts := range tenants {
		if ts.ID == e.actor.TenantID {
			found = &tenants[i]
		}
		if i > 0 {
			assert.False(t, ts.CreatedAt.Before(tenants[i-1].CreatedAt), "oldest first")
		}
	}
	require.NotNil(t, found)
	assert.Equal(t, int64(2), found.Tokens)
	assert.Equal(t, 2, found.ActiveAPIKeys, "the tenant's first key and the expiring one; not the revoked one")
	assert.Nil(t, found.DestroyedAt)

	e.clock.Advance(time.Hour)
	tenants, err = e.svc.ListTenants(ctx)
	require.NoError(t, err)
	for _, ts := range tenants {
		if ts.ID == e.actor.TenantID {
			assert.Equal(t, 1, ts.ActiveAPIKeys, "an expired key is not live")
		}
	}
	_, err = e.svc.DestroyTenant(ctx, e.actor.TenantID)
	require.NoError(t, err)
	tenants, err = e.svc.ListTenants(ctx)
	require.NoError(t, err)
	for _, ts := range tenants {
		if ts.ID == e.actor.TenantID {
			assert.NotNil(t, ts.DestroyedAt, "destroyed tenants are listed as such")
			assert.Zero(t, ts.Tokens)
		}
	}
}
