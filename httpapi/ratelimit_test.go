package httpapi_test

import (
	"context"
	"net/netip"
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

	for i := range 10 {
		require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "successes cost nothing (%d)", i)
	}
	for i := range 3 {
		require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrongKey, "").status, "failure %d is within the budget", i)
	}
	tests := []struct{ name, key string }{
		{"another wrong key", wrongKey},
		{"no key", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 3 failures a minute: one comes back every 20 s.
			requireRateLimited(t, ss.do(t, "GET", "/tokens", tt.key, ""), "20")
		})
	}
	clock.Advance(20 * time.Second)
	assert.Equal(t, 401, ss.do(t, "GET", "/tokens", wrongKey, "").status, "the address recovers one failure")
}

// wrongKey is a well-formed API key that no tenant holds.
const wrongKey = "cvk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func TestASpentFailureBudgetNeverRefusesAValidKey(t *testing.T) {
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{AuthFailures: 2, Now: clock.Now})}, nil)
	_, key := vaulttest.Tenant(t, ss.svc)
	for range 2 {
		require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrongKey, "").status)
	}
	for i := range 20 {
		requireRateLimited(t, ss.do(t, "GET", "/tokens", wrongKey, ""), "30")
		require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "the valid key between failures is served (%d)", i)
	}
}

func TestClientAddressComesFromTrustedProxiesOnly(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     [2]string // the header of the first and the second failure
		second  int       // the second failure's status: 401 on its own budget, 429 on the first one's
		addr    string    // the client address audited for the first failure
	}{
		{"no trusted proxy: the header is ignored", nil, [2]string{"203.0.113.7", "203.0.113.8"}, 429, "127.0.0.1"},
		{"trusted peer: each forwarded client has its own budget", loopback, [2]string{"203.0.113.7", "203.0.113.8"}, 401, "203.0.113.7"},
		{"trusted peer: a spoofed left-most hop is not the client", loopback, [2]string{"198.51.100.1, 203.0.113.7", "198.51.100.2, 203.0.113.7"}, 429, "203.0.113.7"},
		{"trusted hops are skipped from the right", loopback, [2]string{"203.0.113.7, 127.0.0.2", "203.0.113.8, 127.0.0.2"}, 401, "203.0.113.7"},
		{"another peer's trust does not help a spoofer", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, [2]string{"203.0.113.7", "203.0.113.8"}, 429, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{AuthFailures: 1, TrustedProxies: tt.trusted})}, nil)
			res := ss.do(t, "GET", "/tokens", wrongKey, "", "X-Forwarded-For", tt.xff[0])
			require.Equal(t, 401, res.status)
			assert.Equal(t, tt.second, ss.do(t, "GET", "/tokens", wrongKey, "", "X-Forwarded-For", tt.xff[1]).status)
			require.NoError(t, ss.svc.FlushAccessFailures(context.Background())) // refusals are counted, then written
			assert.Equal(t, 1, ss.count(t, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND client_addr = $2`,
				res.header.Get(httpapi.HeaderRequestID), tt.addr), "the audit row names the client address")
		})
	}
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

// holdOrRefuse sends a request to the gated route and returns once it
// either entered the handler (true, the answer still pending) or was
// answered at once (false).
func holdOrRefuse(t *testing.T, ss *safetyServer, g *gate, key string) (bool, response) {
	t.Helper()
	ch := ss.async(t, "POST", "/test/slow", key, `{}`)
	select {
	case <-g.entered:
		return true, response{}
	case res := <-ch:
		return false, res
	case <-time.After(30 * time.Second):
		t.Fatal("neither entered nor answered within 30s")
		return false, response{}
	}
}

func TestOneTenantCannotTakeTheWholeInflightCap(t *testing.T) {
	g := newGate(1000)
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithLimits(httpapi.Limits{MaxInflight: 6})}, func(s *httpapi.Server) {
		s.AddTestRoute("POST", "/test/slow", vault.ScopeTokensCreate, g.handle)
	})
	defer close(g.release)
	tenantA, keyA := vaulttest.Tenant(t, ss.svc, vault.ScopeTokensCreate)
	secondKeyA, _, err := ss.svc.CreateAPIKey(context.Background(), tenantA, []vault.Scope{vault.ScopeTokensCreate}, "second")
	require.NoError(t, err)
	_, keyB := vaulttest.Tenant(t, ss.svc)

	held := 0
	for i := range 6 {
		key := []string{keyA, secondKeyA}[i%2]
		entered, res := holdOrRefuse(t, ss, g, key)
		if entered {
			held++
			continue
		}
		require.Equal(t, 503, res.status, "request %d: body %s", i, res.body)
		_, code := errorCode(t, res)
		assert.Equal(t, "overloaded", code)
	}
	assert.Equal(t, 3, held, "a tenant alone holds at most half the cap, whichever of its keys it uses")
	assert.Equal(t, 200, ss.do(t, "GET", "/tokens", keyB, "").status, "another tenant is still served")
}

func TestFairShareOfTheInflightCap(t *testing.T) {
	tests := []struct {
		name    string
		cap     int
		holders []string // who acquires, in order
		want    []bool
	}{
		{"alone: half the cap", 4, []string{"a", "a", "a"}, []bool{true, true, false}},
		{"a newcomer finds room", 4, []string{"a", "a", "b", "b"}, []bool{true, true, true, false}},
		{"a cap of one serves one", 1, []string{"a", "b"}, []bool{true, false}},
		{"many holders fill the cap one each", 3, []string{"a", "b", "c", "d"}, []bool{true, true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := httpapi.NewFairSlotsForTest(tt.cap)
			var got []bool
			for _, h := range tt.holders {
				got = append(got, f.Acquire(h))
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
