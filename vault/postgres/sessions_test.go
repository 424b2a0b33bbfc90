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

var consoleLife = vault.SessionLife{TTL: 8 * time.Hour, Idle: 15 * time.Minute}

// startSession signs e's actor in and returns the session's secret.
func (e *env) startSession(t *testing.T) (string, vault.ConsoleSession) {
	t.Helper()
	secret, sess, err := e.svc.StartConsoleSession(context.Background(), e.actor, consoleLife)
	require.NoError(t, err)
	return secret, sess
}

// lookup returns the session of secret as a request from 192.0.2.1.
func (e *env) lookup(secret string, touch bool) (vault.ConsoleSession, error) {
	return e.svc.ConsoleSession(context.Background(), secret, "req_console", "192.0.2.1", touch)
}

func TestConsoleSessionStandsForItsKey(t *testing.T) {
	e := newEnv(t)
	secret, started := e.startSession(t)
	require.Regexp(t, `^cvs_[A-Za-z0-9_-]{43}$`, secret)
	got, err := e.lookup(secret, true)
	require.NoError(t, err)
	assert.Equal(t, e.actor.TenantID, got.Actor.TenantID)
	assert.Equal(t, e.actor.APIKeyID, got.Actor.APIKeyID)
	assert.ElementsMatch(t, e.actor.Scopes, got.Actor.Scopes)
	assert.Equal(t, "192.0.2.1", got.Actor.ClientAddr)
	assert.Equal(t, "req_console", got.Actor.RequestID)
	assert.Equal(t, started.CSRFToken, got.CSRFToken)
	assert.NotEmpty(t, got.KeyPrefix)
	assert.Equal(t, e.clock.Now().Add(consoleLife.TTL), got.ExpiresAt)

	var stored int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM console_sessions
		WHERE position(convert_to($1, 'UTF8') in id_hash) > 0 OR position(convert_to($2, 'UTF8') in csrf_hash) > 0`,
		secret, got.CSRFToken).Scan(&stored))
	assert.Zero(t, stored, "neither the secret nor the CSRF token is stored")
	assert.Equal(t, 1, e.tenantAuditCount(t, vault.ActionConsoleSignIn))
}

// tenantAuditCount returns how many audit rows of action e's tenant has.
func (e *env) tenantAuditCount(t *testing.T, action vault.Action) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = $2`, e.actor.TenantID, string(action)).Scan(&n))
	return n
}

func TestConsoleSessionEnds(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, e *env, secret string)
	}{
		{"idle past its timeout", func(t *testing.T, e *env, _ string) { e.clock.Advance(consoleLife.Idle) }},
		{"past its TTL though active", func(t *testing.T, e *env, secret string) {
			for range 40 {
				e.clock.Advance(consoleLife.Idle - time.Minute)
				_, _ = e.lookup(secret, true)
			}
		}},
		{"its key revoked", func(t *testing.T, e *env, _ string) {
			_, err := e.svc.RevokeAPIKey(context.Background(), e.actor.APIKeyID)
			require.NoError(t, err)
		}},
		{"signed out", func(t *testing.T, e *env, secret string) {
			require.NoError(t, e.svc.EndConsoleSession(context.Background(), e.actor, secret))
			assert.Equal(t, 1, e.tenantAuditCount(t, vault.ActionConsoleSignOut))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			secret, _ := e.startSession(t)
			tt.end(t, e, secret)
			_, err := e.lookup(secret, false)
			require.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err), "%v", err)
			assert.Equal(t, vault.CodeSessionInvalid, vault.AsError(err).Code)
		})
	}
}

func TestConsoleSessionIdleTimeoutMovesOnlyWhenTouched(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.startSession(t)
	e.clock.Advance(consoleLife.Idle - time.Minute)
	_, err := e.lookup(secret, false) // a progress poll: not activity
	require.NoError(t, err)
	e.clock.Advance(2 * time.Minute)
	_, err = e.lookup(secret, false)
	require.Error(t, err, "polls alone do not keep a session alive")

	secret, _ = e.startSession(t)
	e.clock.Advance(consoleLife.Idle - time.Minute)
	_, err = e.lookup(secret, true)
	require.NoError(t, err)
	e.clock.Advance(2 * time.Minute)
	_, err = e.lookup(secret, false)
	require.NoError(t, err, "a page view pushes the idle timeout back")
}

func TestConsoleSessionRefusesWhatItDidNotIssue(t *testing.T) {
	e := newEnv(t)
	secret, _ := e.startSession(t)
	for _, bad := range []string{"", secret + "x", secret[:len(secret)-1], e.secret, "cvs_" + uuid.NewString()} {
		_, err := e.lookup(bad, true)
		assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err), "%q", bad)
	}
	other := e.otherActor(t)
	other.APIKeyID = e.actor.APIKeyID // a key id of another tenant
	_, _, err := e.svc.StartConsoleSession(context.Background(), other, consoleLife)
	assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
}

func TestPruneConsoleSessions(t *testing.T) {
	e := newEnv(t)
	old, _ := e.startSession(t)
	e.clock.Advance(consoleLife.Idle)
	live, _ := e.startSession(t) // starting prunes too
	var rows int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM console_sessions WHERE tenant_id = $1`,
		e.actor.TenantID).Scan(&rows))
	assert.Equal(t, 1, rows)
	e.clock.Advance(consoleLife.Idle)
	n, err := e.svc.PruneConsoleSessions(context.Background())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(1))
	for _, s := range []string{old, live} {
		_, err := e.lookup(s, false)
		assert.Error(t, err)
	}
}

func TestTenantAPIKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.clock.Advance(time.Second)
	secret, created, err := e.svc.CreateTenantAPIKey(ctx, e.actor, []vault.Scope{vault.ScopeAuditRead}, "auditor")
	require.NoError(t, err)
	reader := vaultActor(t, e, secret)
	_, _, err = e.svc.CreateTenantAPIKey(ctx, reader, []vault.Scope{vault.ScopeKeysManage}, "escalation")
	require.Equal(t, vault.KindForbidden, vault.ErrorKind(err), "a key grants only scopes it holds")

	keys, err := e.svc.ListTenantAPIKeys(ctx, e.actor)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	assert.Equal(t, created.ID, keys[0].ID, "newest first")

	other := e.otherActor(t)
	_, err = e.svc.RevokeTenantAPIKey(ctx, other, created.ID)
	require.Equal(t, vault.KindNotFound, vault.ErrorKind(err), "another tenant's key is unknown")
	_, err = e.svc.RevokeTenantAPIKey(ctx, e.actor, created.ID)
	require.NoError(t, err)
	_, err = e.svc.Authenticate(ctx, secret, "req", "192.0.2.1")
	assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))

	var by uuid.UUID
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT api_key_id FROM audit_events
		WHERE action = 'api_key.revoke' AND tenant_id = $1`, e.actor.TenantID).Scan(&by))
	assert.Equal(t, e.actor.APIKeyID, by, "the revocation is audited as the key that made it")
}

func vaultActor(t *testing.T, e *env, secret string) vault.Actor {
	t.Helper()
	a, err := e.svc.Authenticate(context.Background(), secret, "req", "192.0.2.1")
	require.NoError(t, err)
	return a
}

func TestFindAuditEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("bk-audit-filter"))
	e.tokenize(t, visa("bk-audit-other"))
	_, err := e.svc.GetToken(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	tests := []struct {
		name string
		f    vault.AuditFilter
		want []vault.Action
	}{
		{"by action", vault.AuditFilter{Action: vault.ActionTokenRead}, []vault.Action{vault.ActionTokenRead}},
		{"by token", vault.AuditFilter{TokenID: tok.ID}, []vault.Action{vault.ActionTokenRead, vault.ActionTokenCreate}},
		{"by both", vault.AuditFilter{Action: vault.ActionTokenCreate, TokenID: tok.ID}, []vault.Action{vault.ActionTokenCreate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := e.svc.FindAuditEvents(ctx, e.actor, tt.f, 100, 0)
			require.NoError(t, err)
			var got []vault.Action
			for _, ev := range page.Events {
				got = append(got, ev.Action)
			}
			assert.Equal(t, tt.want, got)
		})
	}
	page, err := e.svc.FindAuditEvents(ctx, e.actor, vault.AuditFilter{Action: vault.ActionAuditList}, 1, 0)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"count": float64(1), "action": "token.create", "token_id": tok.ID.String()},
		page.Events[0].Detail, "the listing's audit row names its filter")
}

func TestVerifyTenantAuditIsAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, visa("bk-verify"))
	r, err := e.svc.VerifyTenantAudit(ctx, e.actor)
	require.NoError(t, err)
	assert.True(t, r.OK)
	assert.Equal(t, 1, r.Chains)
	assert.Positive(t, r.Rows)
	assert.Equal(t, 1, e.tenantAuditCount(t, vault.ActionAuditVerify))
}

func TestActivity(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, visa("bk-day-1"))
	e.clock.Advance(24 * time.Hour)
	e.tokenize(t, visa("bk-day-2a"))
	e.tokenize(t, visa("bk-day-2b"))
	require.Error(t, e.svc.Require(ctx, vault.Actor{TenantID: e.actor.TenantID}, vault.ScopeKeysManage))
	require.Error(t, e.svc.Require(ctx, vault.Actor{TenantID: e.actor.TenantID}, vault.ScopeKeysManage))
	require.NoError(t, e.svc.FlushAccessFailures(ctx)) // the two refusals share one row counting both

	r, err := e.svc.Activity(ctx, e.actor, 3)
	require.NoError(t, err)
	require.Len(t, r.Days, 3)
	today := e.clock.Now().UTC().Truncate(24 * time.Hour)
	assert.Equal(t, today, r.Days[2].Day)
	got := [][2]int64{}
	for _, d := range r.Days {
		got = append(got, [2]int64{d.Tokens, d.Errors})
	}
	assert.Equal(t, [][2]int64{{0, 0}, {1, 0}, {2, 2}}, got)
	assert.Equal(t, int64(3), r.TokensHeld)
	for _, days := range []int{0, 91} {
		_, err := e.svc.Activity(ctx, e.actor, days)
		assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err))
	}
}
