package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	cardpkg "github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// auditServer is a test server whose audit rows from since on are the
// test's own.
type auditServer struct {
	*safetyServer
	since int64
}

// newAuditServer is the test server with limits, whose refusals share an
// audit row for an hour (so a window never ends within a test: rows are
// written by flush) and whose windows keep sources apart.
func newAuditServer(t *testing.T, limits httpapi.Limits, sources int) *auditServer {
	t.Helper()
	ts := &testServer{clock: vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)), log: &lockedBuffer{}}
	logger := slog.New(slog.NewJSONHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	limits.Now = ts.clock.Now
	ts.svc = vaulttest.NewService(t, dbURL, vaulttest.Options{Now: ts.clock.Now, Logger: logger,
		AccessFailureWindow: time.Hour, AccessFailureSources: sources})
	ts.serve(t, httpapi.New(ts.svc, logger, httpapi.WithLimits(limits)))
	ss := &auditServer{safetyServer: &safetyServer{testServer: ts, pool: vaulttest.Pool(t, dbURL)}}
	require.NoError(t, ss.pool.QueryRow(context.Background(), `SELECT coalesce(max(id), 0) FROM audit_events`).Scan(&ss.since))
	return ss
}

// refusalRow is an audit row of refused requests.
type refusalRow struct {
	action, outcome, addr, requestID string
	tenant, key                      *uuid.UUID
	detail                           map[string]any
}

// flush writes the refusals counted so far.
func (ss *auditServer) flush(t *testing.T) {
	t.Helper()
	require.NoError(t, ss.svc.FlushAccessFailures(context.Background()))
}

// refusalRows returns the audit rows of action, oldest first.
func (ss *auditServer) refusalRows(t *testing.T, action vault.Action) []refusalRow {
	t.Helper()
	rows, err := ss.pool.Query(context.Background(), `SELECT action, outcome, client_addr, request_id, tenant_id, api_key_id, detail
		FROM audit_events WHERE action = $1 AND id > $2 ORDER BY id`, string(action), ss.since)
	require.NoError(t, err)
	defer rows.Close()
	var out []refusalRow
	for rows.Next() {
		var r refusalRow
		var detail []byte
		require.NoError(t, rows.Scan(&r.action, &r.outcome, &r.addr, &r.requestID, &r.tenant, &r.key, &detail))
		require.NoError(t, json.Unmarshal(detail, &r.detail))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// rowOf returns the audit row whose first request was res.
func (ss *auditServer) rowOf(t *testing.T, res response) refusalRow {
	t.Helper()
	id := res.header.Get(httpapi.HeaderRequestID)
	for _, a := range []vault.Action{vault.ActionAuthFailed, vault.ActionAuthDenied, vault.ActionAccessFailed, vault.ActionAccessThrottled} {
		for _, r := range ss.refusalRows(t, a) {
			if r.requestID == id {
				return r
			}
		}
	}
	t.Fatalf("no audit row of request %s", id)
	return refusalRow{}
}

// TestRefusedRequestsAreAudited: every kind of refused request (an
// unknown token read, a foreign tenant's token revealed, a malformed id, a
// delete of an unknown id, unknown and foreign tokens forwarded, a missing
// scope, a bad key; throttled requests below)
// answers as before and is audited with its outcome, the requested id, the
// route and the client address, as the key and tenant when known.
func TestRefusedRequestsAreAudited(t *testing.T) {
	ss := newAuditServer(t, httpapi.Limits{Rate: 1000, Burst: 1000}, 0)
	tenant, key := vaulttest.Tenant(t, ss.svc)
	_, foreignKey := vaulttest.Tenant(t, ss.svc)
	_, readOnly := vaulttest.Tenant(t, ss.svc, vault.ScopeTokensRead)
	res := ss.do(t, "POST", "/tokens", foreignKey, cardBody("pm_foreign", visaPAN))
	require.Equal(t, 201, res.status)
	foreign := res.json(t)["id"].(string)
	keyID := vaulttest.Actor(t, ss.svc, key).APIKeyID
	unknown := uuid.NewString()

	tests := []struct {
		name, method, path, key  string
		status                   int
		code                     string
		action                   vault.Action
		outcome                  vault.Outcome
		requested, route, reason string
		asKey                    bool
	}{
		{"unknown token read", "GET", "/tokens/" + unknown, key, 404, vault.CodeResourceMissing,
			vault.ActionAccessFailed, vault.OutcomeFailure, unknown, "GET /tokens/:id", vault.CodeResourceMissing, true},
		{"foreign token revealed", "POST", "/tokens/" + foreign + "/detokenize", key, 404, vault.CodeResourceMissing,
			vault.ActionAccessFailed, vault.OutcomeFailure, foreign, "POST /tokens/:id/detokenize", vault.CodeResourceMissing, true},
		{"malformed id", "GET", "/tokens/not-a-token", key, 404, vault.CodeResourceMissing,
			vault.ActionAccessFailed, vault.OutcomeFailure, "not-a-token", "GET /tokens/:id", vault.CodeResourceMissing, true},
		{"unknown token deleted", "DELETE", "/tokens/" + unknown, key, 404, vault.CodeResourceMissing,
			vault.ActionAccessFailed, vault.OutcomeFailure, unknown, "DELETE /tokens/:id", vault.CodeResourceMissing, true},
		{"unknown token forwarded", "FORWARD", "", key, 404, vault.CodeResourceMissing,
			vault.ActionAccessFailed, vault.OutcomeFailure, unknown, "POST /v1/forwarding/requests", vault.CodeResourceMissing, true},
		{"foreign token forwarded", "FORWARD", "", key, 404, vault.CodeResourceMissing,
			vault.ActionAccessFailed, vault.OutcomeFailure, foreign, "POST /v1/forwarding/requests", vault.CodeResourceMissing, true},
		{"unknown route", "GET", "/cards/4242424242424242", key, 404, vault.CodeRouteNotFound,
			vault.ActionAccessFailed, vault.OutcomeFailure, "", "GET (no route)", vault.CodeRouteNotFound, false},
		{"missing scope", "POST", "/tokens/" + unknown + "/detokenize", readOnly, 403, vault.CodeMissingScope,
			vault.ActionAuthDenied, vault.OutcomeDenied, "", "POST /tokens/:id/detokenize", vault.CodeMissingScope, false},
		{"bad key", "GET", "/tokens", wrongKey, 401, vault.CodeInvalidAPIKey,
			vault.ActionAuthFailed, vault.OutcomeFailure, "", "GET /tokens", "unknown_key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res response
			if tt.method == "FORWARD" {
				res = ss.postForm(t, "/v1/forwarding/requests", tt.key, forwardForm(tt.requested, "https://example.com/charge"))
			} else {
				res = ss.do(t, tt.method, tt.path, tt.key, "")
			}
			require.Equal(t, tt.status, res.status, "%s", res.body)
			_, code := errorCode(t, res)
			assert.Equal(t, tt.code, code, "the answer is unchanged")
			ss.flush(t)
			row := ss.rowOf(t, res)
			assert.Equal(t, string(tt.action), row.action)
			assert.Equal(t, string(tt.outcome), row.outcome)
			assert.Equal(t, "127.0.0.1", row.addr)
			assert.Equal(t, tt.route, row.detail["route"])
			assert.Equal(t, tt.reason, row.detail["reason"])
			assert.EqualValues(t, 1, row.detail["count"])
			if tt.requested != "" {
				assert.Equal(t, tt.requested, row.detail["requested_id"])
			}
			if tt.asKey {
				require.NotNil(t, row.tenant)
				assert.Equal(t, tenant, *row.tenant, "in the requesting tenant's trail")
				assert.Equal(t, keyID, *row.key)
			}
		})
	}
	t.Run("missing scope names it", func(t *testing.T) {
		rows := ss.refusalRows(t, vault.ActionAuthDenied)
		require.Len(t, rows, 1)
		assert.Equal(t, string(vault.ScopeTokensReveal), rows[0].detail["missing_scope"])
	})
}

// TestThrottledRequestsAreAudited: a 429 over the key's rate and a 429 past
// the address's failed-authentication budget are each audited, with their
// count, and answer as before.
func TestThrottledRequestsAreAudited(t *testing.T) {
	ss := newAuditServer(t, httpapi.Limits{Rate: 1, Burst: 1, AuthFailures: 1}, 0)
	_, key := vaulttest.Tenant(t, ss.svc)
	require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status)
	first := ss.do(t, "GET", "/tokens", key, "")
	requireRateLimited(t, first, "1")
	requireRateLimited(t, ss.do(t, "GET", "/tokens", key, ""), "1")
	require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrongKey, "").status)
	requireRateLimited(t, ss.do(t, "GET", "/tokens", wrongKey, ""), "60")
	ss.flush(t)

	rows := ss.refusalRows(t, vault.ActionAccessThrottled)
	require.Len(t, rows, 2)
	byReason := map[any]refusalRow{rows[0].detail["reason"]: rows[0], rows[1].detail["reason"]: rows[1]}
	rate := byReason["api_key_rate"]
	assert.Equal(t, first.header.Get(httpapi.HeaderRequestID), rate.requestID, "the row keeps its first request's id")
	assert.EqualValues(t, 2, rate.detail["count"])
	assert.Equal(t, string(vault.OutcomeDenied), rate.outcome)
	assert.Equal(t, "127.0.0.1", rate.addr)
	assert.NotNil(t, rate.key, "as the key")
	budget := byReason["auth_failure_budget"]
	assert.EqualValues(t, 1, budget.detail["count"])
	assert.Nil(t, budget.tenant, "no key: the system chain")
	failed := ss.refusalRows(t, vault.ActionAuthFailed)
	require.Len(t, failed, 1)
	assert.EqualValues(t, 2, failed[0].detail["count"], "both failures, the throttled one too")
}

// TestRepeatedFailuresShareOneRow: 500 bad-key attempts from one address
// within a window are one audit row counting 500, with their first and
// last time, reason and route.
func TestRepeatedFailuresShareOneRow(t *testing.T) {
	ss := newAuditServer(t, httpapi.Limits{}, 0)
	for i := range 500 {
		require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrongKey, "").status, "attempt %d", i)
		if i == 250 {
			ss.clock.Advance(3 * time.Second)
		}
	}
	ss.flush(t)
	rows := ss.refusalRows(t, vault.ActionAuthFailed)
	require.Len(t, rows, 1, "one row, not 500")
	d := rows[0].detail
	assert.EqualValues(t, 500, d["count"])
	assert.Equal(t, "unknown_key", d["reason"])
	assert.Equal(t, "GET /tokens", d["route"])
	assert.Equal(t, "2026-11-01T12:00:00Z", d["first_at"])
	assert.Equal(t, "2026-11-01T12:00:03Z", d["last_at"])
	assert.Equal(t, "127.0.0.1", rows[0].addr)
}

// TestSourcesPastTheCapFoldIntoOneRow: failures from rotating client
// addresses (read from X-Forwarded-For behind a trusted proxy) each get a
// row up to the cap of sources per window; the rest share one row counting
// them, so memory and rows stay bounded.
func TestSourcesPastTheCapFoldIntoOneRow(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	ss := newAuditServer(t, httpapi.Limits{TrustedProxies: loopback}, 10)
	for i := range 50 {
		addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}).String()
		require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrongKey, "", "X-Forwarded-For", addr).status)
	}
	ss.flush(t)
	rows := ss.refusalRows(t, vault.ActionAuthFailed)
	require.Len(t, rows, 11, "10 sources and one row for the others")
	var folded []refusalRow
	addrs := map[string]bool{}
	for _, r := range rows {
		if r.detail["other_sources"] == true {
			folded = append(folded, r)
			continue
		}
		assert.EqualValues(t, 1, r.detail["count"])
		addrs[r.addr] = true
	}
	require.Len(t, folded, 1)
	assert.EqualValues(t, 40, folded[0].detail["count"])
	assert.Len(t, addrs, 10)
	assert.True(t, addrs["203.0.113.1"], "the client address behind the trusted proxy")
}

// TestRefusalsDoNotWaitForTheAuditCommit: with the audit table locked
// against writes, refused requests still answer (their rows are written
// once it is free), so a slow or stuck audit write never holds an answer.
func TestRefusalsDoNotWaitForTheAuditCommit(t *testing.T) {
	ss := newAuditServer(t, httpapi.Limits{}, 0)
	_, readOnly := vaulttest.Tenant(t, ss.svc, vault.ScopeTokensRead)
	ctx := context.Background()
	tx, err := ss.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `LOCK TABLE audit_events IN SHARE MODE`) // blocks every INSERT
	require.NoError(t, err)
	answer := func(method, path, key string) int {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // far below the lock, which is held until after
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, method, ss.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", key)
		res, err := ss.Client().Do(req)
		require.NoError(t, err, "the refusal answers while the audit table is locked")
		defer res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, 401, answer("GET", "/tokens", wrongKey))
	assert.Equal(t, 403, answer("POST", "/tokens/"+uuid.NewString()+"/detokenize", readOnly))
	flushed := make(chan error, 1)
	go func() { flushed <- ss.svc.FlushAccessFailures(ctx) }()
	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, <-flushed)
	assert.Len(t, ss.refusalRows(t, vault.ActionAuthFailed), 1)
	assert.Len(t, ss.refusalRows(t, vault.ActionAuthDenied), 1)
}

// TestNoCardNumberReachesARefusalRow: a requested id or a query parameter
// holding a public test card number, in every refused request kind, leaves
// no card number in any audit row.
func TestNoCardNumberReachesARefusalRow(t *testing.T) {
	ss := newAuditServer(t, httpapi.Limits{Rate: 1, Burst: 1}, 0)
	_, key := vaulttest.Tenant(t, ss.svc)
	_, readOnly := vaulttest.Tenant(t, ss.svc, vault.ScopeTokensRead)
	for _, c := range vaulttest.Cards(t) {
		pan := c.Number
		spaced := strings.Join([]string{pan[:4], pan[4:8], pan[8:]}, "%20")
		for _, req := range []struct {
			method, path, key string
		}{
			{"GET", "/tokens/" + pan, key},
			{"POST", "/tokens/" + spaced + "/detokenize", key},
			{"DELETE", "/tokens/" + pan, key},
			{"GET", "/v1/forwarding/requests/" + pan, key},
			{"FORWARD", pan, key},
			{"GET", "/cards/" + pan, key}, // no such route: the URL is never kept
			{"POST", "/tokens/" + pan + "/detokenize", readOnly},
			{"GET", "/tokens?business_key=" + pan, wrongKey},
			{"GET", "/tokens/" + pan + "?business_key=" + pan, wrongKey},
			{"GET", "/tokens?business_key=" + pan, key}, // throttled past the first
		} {
			var res response
			if req.method == "FORWARD" {
				res = ss.postForm(t, "/v1/forwarding/requests", req.key, forwardForm(req.path, "https://example.com/charge"))
			} else {
				res = ss.do(t, req.method, req.path, req.key, "")
			}
			assert.Contains(t, []int{200, 401, 403, 404, 429}, res.status, "%s %s", req.method, cardpkg.MaskPANs(req.path))
		}
	}
	ss.flush(t)
	rows, err := ss.pool.Query(context.Background(), `SELECT action, client_addr || ' ' || detail::text, request_id
		FROM audit_events WHERE action IN ('auth.failed', 'auth.denied', 'access.failed', 'access.throttled') AND id > $1`, ss.since)
	require.NoError(t, err)
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var action, text, requestID string
		require.NoError(t, rows.Scan(&action, &text, &requestID))
		seen[action] = true
		// The request id is random hex, whose digit runs are Luhn-valid by
		// chance now and then: it is searched for the numbers sent only.
		assert.False(t, cardpkg.ContainsPAN(text), "%s row holds a card number: %s", action, cardpkg.MaskPANs(text))
		for _, c := range vaulttest.Cards(t) {
			assert.NotContains(t, text+" "+requestID, c.Number)
		}
	}
	require.NoError(t, rows.Err())
	assert.Len(t, seen, 4, "every kind of refusal was written")
}
