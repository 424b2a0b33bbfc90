package httpapi_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// requireRateLimited asserts a 429 rate_limited answer with Retry-After.
func requireRateLimited(t *testing.T, res response, retryAfter string) {
	t.Helper()
	require.Equal(t, 429, res.status, "body: %s", res.body)
	typ, code := errorCode(t, res)
	assert.Equal(t, "invalid_request_error", typ)
	assert.Equal(t, "rate_limited", code)
	assert.Equal(t, retryAfter, res.header.Get("Retry-After"))
	assert.NotEmpty(t, res.header.Get(httpapi.HeaderRequestID))
}

func TestRateLimitPerAPIKey(t *testing.T) {
	tests := []struct {
		name       string
		rate       float64
		burst      int
		retryAfter string        // seconds, rounded up
		refill     time.Duration // time until one more request may pass
	}{
		{"1 per second, burst 2", 1, 2, "1", time.Second},
		{"0.4 per second, burst 1", 0.4, 1, "3", 2500 * time.Millisecond},
		{"50 per second, burst 3", 50, 3, "1", 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
			ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{Rate: tt.rate, Burst: tt.burst, Now: clock.Now})}, nil)
			_, key := vaulttest.Tenant(t, ss.svc)
			_, other := vaulttest.Tenant(t, ss.svc)
			for i := range tt.burst {
				require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "request %d is within the burst", i)
			}
			requireRateLimited(t, ss.do(t, "GET", "/tokens", key, ""), tt.retryAfter)
			assert.Equal(t, 200, ss.do(t, "GET", "/tokens", other, "").status, "another key has its own bucket")

			clock.Advance(tt.refill - time.Millisecond)
			requireRateLimited(t, ss.do(t, "GET", "/tokens", key, ""), "1")
			clock.Advance(time.Millisecond)
			assert.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "the bucket refills")
			assert.Equal(t, 429, ss.do(t, "GET", "/tokens", key, "").status)
		})
	}
}

func TestRateLimitedRequestsAreNotStoredForIdempotency(t *testing.T) {
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{Rate: 1, Burst: 1, Now: clock.Now})}, nil)
	tenant, key := vaulttest.Tenant(t, ss.svc)
	require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status)
	requireRateLimited(t, ss.do(t, "POST", "/tokens", key, cardBody("pm_rl", visaPAN), idem("rl-1")...), "1")
	clock.Advance(time.Second)
	res := ss.do(t, "POST", "/tokens", key, cardBody("pm_rl", visaPAN), idem("rl-1")...)
	assert.Equal(t, 201, res.status, "the retry runs: the 429 was not kept")
	assert.Equal(t, 1, ss.tokenRows(t, tenant))
}

func TestFailedAuthenticationsAreLimitedPerAddress(t *testing.T) {
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{AuthFailures: 3, Now: clock.Now})}, nil)
	_, key := vaulttest.Tenant(t, ss.svc)
	const wrong = "cvk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	before := ss.count(t, `SELECT count(*) FROM audit_events WHERE action = $1`, string(vault.ActionAuthFailed))

	for i := range 10 {
		require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "successes cost nothing (%d)", i)
	}
	for i := range 3 {
		require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrong, "").status, "failure %d is within the budget", i)
	}
	tests := []struct{ name, key string }{
		{"another wrong key", wrong},
		{"no key", ""},
		{"a valid key from the same address", key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 3 failures a minute: one comes back every 20 s.
			requireRateLimited(t, ss.do(t, "GET", "/tokens", tt.key, ""), "20")
		})
	}
	after := ss.count(t, `SELECT count(*) FROM audit_events WHERE action = $1`, string(vault.ActionAuthFailed))
	assert.Equal(t, 3, after-before, "refused attempts never reach the key lookup or the audit trail")

	clock.Advance(20 * time.Second)
	assert.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "the address recovers")
}

func TestInflightCapAnswers503(t *testing.T) {
	g := newGate(1)
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{MaxInflight: 1})}, func(s *httpapi.Server) {
		s.AddTestRoute("POST", "/test/slow", vault.ScopeTokensCreate, g.handle)
	})
	_, key := vaulttest.Tenant(t, ss.svc)
	busy := ss.async(t, "POST", "/test/slow", key, `{}`)
	waitEntered(t, g)

	tests := []struct {
		name, method, path, key string
		status                  int
	}{
		{"an API request", "GET", "/tokens", key, 503},
		{"an unauthenticated request", "GET", "/tokens", "", 503},
		{"liveness is not capped", "GET", "/healthz", "", 200},
		{"readiness is not capped", "GET", "/readyz", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ss.do(t, tt.method, tt.path, tt.key, "")
			require.Equal(t, tt.status, res.status, "body: %s", res.body)
			if tt.status == 503 {
				typ, code := errorCode(t, res)
				assert.Equal(t, "api_error", typ)
				assert.Equal(t, "overloaded", code)
				assert.Equal(t, "1", res.header.Get("Retry-After"))
			}
		})
	}
	close(g.release)
	require.Equal(t, 201, wait(t, busy).status)
	assert.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "a freed slot serves again")
	assert.NotContains(t, ss.log.String(), `"msg":"request failed"`, "refusals under load are not logged as failures")
}
