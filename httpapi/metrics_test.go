package httpapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestRequestsAreCountedByRoutePatternMethodAndCode(t *testing.T) {
	reg := prometheus.NewRegistry()
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithMetrics(metrics.NewHTTP(reg))}, nil)
	_, key := vaulttest.Tenant(t, ss.svc)
	created := ss.do(t, "POST", "/tokens", key, cardBody("pm_metrics_route", visaPAN))
	require.Equal(t, 201, created.status, "body: %s", created.body)
	var tok struct{ ID string }
	require.NoError(t, json.Unmarshal(created.body, &tok))

	requests := []struct {
		method, path string
		status       int
	}{
		{"GET", "/tokens/" + tok.ID, 200},
		{"GET", "/tokens/" + tok.ID, 200},
		{"HEAD", "/tokens/" + tok.ID, 200},
		{"GET", "/tokens/00000000-0000-4000-8000-000000000000", 404},
		{"GET", "/tokens?business_key=pm_metrics_route", 200},
		{"GET", "/no/such/route/" + tok.ID, 404},
		{"PATCH", "/tokens/" + tok.ID, 405},
	}
	for _, r := range requests {
		require.Equal(t, r.status, ss.do(t, r.method, r.path, key, "").status, "%s %s", r.method, r.path)
	}
	out := metricstest.Expose(t, reg)
	for series, want := range map[string]float64{
		`cardvault_http_requests_total{code="201",method="POST",route="/tokens"}`:         1,
		`cardvault_http_requests_total{code="200",method="GET",route="/tokens/:id"}`:      2,
		`cardvault_http_requests_total{code="200",method="HEAD",route="/tokens/:id"}`:     1,
		`cardvault_http_requests_total{code="404",method="GET",route="/tokens/:id"}`:      1,
		`cardvault_http_requests_total{code="200",method="GET",route="/tokens"}`:          1,
		`cardvault_http_requests_total{code="404",method="GET",route="unmatched"}`:        1,
		`cardvault_http_requests_total{code="405",method="PATCH",route="unmatched"}`:      1,
		`cardvault_http_request_duration_seconds_count{method="GET",route="/tokens/:id"}`: 3,
		`cardvault_http_requests_in_flight`:                                               0,
	} {
		assert.Equal(t, want, metricstest.Value(t, out, series), series)
	}
	for _, leak := range []string{tok.ID, "pm_metrics_route", visaPAN, "/no/such", key[:20]} {
		assert.NotContains(t, string(out), leak, "no id, business key, card number, raw path or API key prefix in the metrics")
	}
}

func TestRefusalsAreCountedByReason(t *testing.T) {
	const wrong = "cvk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	g := newGate(1)
	ss := newSafetyServer(t, []httpapi.Option{httpapi.WithMetrics(metrics.NewHTTP(reg)),
		httpapi.WithLimits(httpapi.Limits{Rate: 1, Burst: 1, AuthFailures: 1, MaxInflight: 1, Now: clock.Now})},
		func(s *httpapi.Server) { s.AddTestRoute("POST", "/test/slow", vault.ScopeTokensCreate, g.handle) })
	_, key := vaulttest.Tenant(t, ss.svc)
	_, other := vaulttest.Tenant(t, ss.svc)

	require.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status)
	require.Equal(t, 429, ss.do(t, "GET", "/tokens", key, "").status, "over the key's rate")
	busy := ss.async(t, "POST", "/test/slow", other, `{}`)
	waitEntered(t, g)
	require.Equal(t, 503, ss.do(t, "GET", "/tokens", key, "").status, "over the in-flight cap")
	close(g.release)
	require.Equal(t, 201, wait(t, busy).status)
	require.Equal(t, 401, ss.do(t, "GET", "/tokens", wrong, "").status)
	require.Equal(t, 429, ss.do(t, "GET", "/tokens", wrong, "").status, "over the address's failed authentications")

	out := metricstest.Expose(t, reg)
	for _, reason := range []string{"rate_limited", "overloaded", "auth_failures"} {
		assert.Equal(t, 1.0, metricstest.Value(t, out, `cardvault_http_refusals_total{reason="`+reason+`"}`), reason)
	}
	assert.Equal(t, 2.0, metricstest.Value(t, out, `cardvault_http_requests_total{code="429",method="GET",route="/tokens"}`))
	assert.Equal(t, 1.0, metricstest.Value(t, out, `cardvault_http_requests_total{code="201",method="POST",route="unmatched"}`),
		"a route added after the server was built is not in its table")
}
