package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// metricsRun drives a served vault the way many merchants would, keeping
// every value of the run that must never reach the metrics.
type metricsRun struct {
	a       *app
	sv      *servedVault
	limits  *vaulttest.Clock // the rate limits' clock
	hook    *httptest.Server // a webhook receiver on loopback
	cards   atomic.Int64     // cards used so far
	mu      sync.Mutex
	secrets []string // token ids, business keys, card numbers, API keys and their prefixes, tenant and key ids
}

// runAuthBudget is the failed authentications per minute the run's vault
// allows one address, and runBurst each key's burst (its rate is next to
// nothing, so a key may send runBurst requests in all).
const (
	runAuthBudget = 2
	runBurst      = 6
)

// keep records values that must never appear in a scrape.
func (r *metricsRun) keep(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, values...)
}

// phase runs keys API keys (five per tenant, each with a token of its own
// through create, read, reveal, list and a miss), one key over its rate,
// failed authentications past the address's budget, a request to no route
// and a webhook per phase, and waits for the webhooks to be delivered.
func (r *metricsRun) phase(t *testing.T, keys int) {
	t.Helper()
	r.limits.Advance(time.Hour) // refill the address's failed-authentication budget
	secrets := r.apiKeys(t, keys)
	client := e2e.NewClient(r.sv.url, secrets[0], 1, 10*time.Second)
	defer client.Close()
	_, err := client.Call(context.Background(), http.MethodPut, "/webhook", fmt.Appendf(nil, `{"url":%q}`, r.hook.URL), http.StatusOK)
	require.NoError(t, err)
	var wg sync.WaitGroup
	work := make(chan string)
	for range 4 {
		wg.Go(func() {
			for key := range work {
				r.merchant(t, key)
			}
		})
	}
	for _, key := range secrets {
		work <- key
	}
	close(work)
	wg.Wait()
	r.overTheLimits(t, secrets[len(secrets)-1])
	r.a.tel.Forwards().ForwardObserved("dst_processor_a", metrics.ForwardOK, 40*time.Millisecond)
	r.a.tel.Forwards().ForwardObserved("dst_processor_b", metrics.ForwardUnreachable, 0)
	waitFor(t, 30*time.Second, "every webhook event delivered", func() bool {
		st, err := r.a.svc.MetricsState(context.Background(), time.Hour)
		return err == nil && st.OutboxPending == 0
	})
}

// apiKeys creates n API keys holding every scope, five per new tenant.
func (r *metricsRun) apiKeys(t *testing.T, n int) []string {
	t.Helper()
	ctx := context.Background()
	var secrets []string
	var tenant vault.Tenant
	for i := range n {
		if i%5 == 0 {
			var err error
			tenant, err = r.a.svc.CreateTenant(ctx, "metrics-"+uuid.NewString()[:8])
			require.NoError(t, err)
			r.keep(tenant.ID.String())
		}
		secret, key, err := r.a.svc.CreateAPIKey(ctx, tenant.ID, vault.AllScopes, "metrics run")
		require.NoError(t, err)
		secrets = append(secrets, secret)
		r.keep(secret, secret[:20], key.ID.String())
	}
	return secrets
}

// merchant uses one API key for one card: tokenize, read, reveal, list by
// business key, and read an unknown token.
func (r *metricsRun) merchant(t *testing.T, key string) {
	i := int(r.cards.Add(1))
	bk, number := "pm_metricsrun_"+strconv.Itoa(i), e2e.CardNumber(1000+i)
	c := e2e.NewClient(r.sv.url, key, 1, 10*time.Second)
	defer c.Close()
	ctx := context.Background()
	body, err := c.Call(ctx, http.MethodPost, "/tokens", e2e.ForwardBody(bk, number), http.StatusCreated)
	require.NoError(t, err)
	id, err := e2e.TokenID(body)
	require.NoError(t, err)
	r.keep(id, bk, number)
	for _, step := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{http.MethodGet, "/tokens/" + id, nil, http.StatusOK},
		{http.MethodPost, "/tokens/" + id + "/detokenize", []byte(`{"reason":"metrics run"}`), http.StatusOK},
		{http.MethodGet, "/tokens?business_key=" + bk, nil, http.StatusOK},
		{http.MethodGet, "/tokens/" + uuid.NewString(), nil, http.StatusNotFound},
	} {
		_, err := c.Call(ctx, step.method, step.path, step.body, step.want)
		require.NoError(t, err)
	}
}

// overTheLimits sends key past its burst (429), asks for a route that does
// not exist (404), and fails authentication past the address's budget
// (401s, then 429).
func (r *metricsRun) overTheLimits(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	c := e2e.NewClient(r.sv.url, key, 1, 10*time.Second)
	defer c.Close()
	statuses := func(c *e2e.Client, path string, n int) []int {
		var out []int
		for range n {
			a, err := c.Send(ctx, http.MethodGet, path, nil)
			require.NoError(t, err)
			out = append(out, a.Status)
		}
		return out
	}
	// The key spent all but one request of its burst as a merchant.
	assert.Equal(t, []int{http.StatusOK, http.StatusTooManyRequests}, statuses(c, "/tokens", 2), "the key goes over its burst")
	assert.Equal(t, []int{http.StatusNotFound}, statuses(c, "/no-such-route/"+key[:20], 1))
	wrong := e2e.NewClient(r.sv.url, "cvk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, 10*time.Second)
	defer wrong.Close()
	assert.Equal(t, append(slices.Repeat([]int{http.StatusUnauthorized}, runAuthBudget), http.StatusTooManyRequests),
		statuses(wrong, "/tokens", runAuthBudget+1))
}

// startMetricsRun serves a vault with metrics on a loopback port of their
// own, rate limits on a settable clock and a webhook receiver.
func startMetricsRun(t *testing.T) *metricsRun {
	t.Helper()
	_, kekURI := vaulttest.KEK(t)
	port, err := e2e.FreePort()
	require.NoError(t, err)
	r := &metricsRun{limits: vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))}
	cfg := faultServeConfig(migratedDatabase(t), kekURI)
	cfg.MetricsListen = "127.0.0.1:" + strconv.Itoa(port)
	cfg.EgressAllowLoopback = true // the webhook receiver listens on loopback
	cfg.Limits = httpapi.Limits{Rate: 0.0001, Burst: runBurst, AuthFailures: runAuthBudget, Now: r.limits.Now}
	r.a, err = openApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(r.a.Close)
	require.NotNil(t, r.a.tel, "VAULT_METRICS_LISTEN turns the metrics on")
	r.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(r.hook.Close)
	r.sv = startServeWith(t, r.a.svc, cfg, r.a.tel)
	return r
}

// metricsURL is where the run's vault serves its metrics.
func (r *metricsRun) metricsURL() string { return "http://" + r.a.cfg.MetricsListen + "/metrics" }

func TestMetricsStayBoundedAndHoldNothingOfTheRun(t *testing.T) {
	r := startMetricsRun(t)
	r.phase(t, 10)
	after10 := metricstest.Scrape(t, r.metricsURL())
	r.phase(t, 200)
	after200 := metricstest.Scrape(t, r.metricsURL())

	t.Run("the series are the same after 10 and after 200 keys, tokens and cards", func(t *testing.T) {
		few, many := metricstest.Series(after10), metricstest.Series(after200)
		assert.Equal(t, len(few), len(many), "only in the second: %v; only in the first: %v", missing(few, many), missing(many, few))
		t.Logf("%d series after 10 keys, %d after 210", len(few), len(many))
	})
	t.Run("no value of the run is in the scrape", func(t *testing.T) {
		require.Len(t, r.secrets, 42+3*210+3*210, "tenant ids, keys with their prefixes and ids, tokens with their business keys and numbers")
		for _, v := range r.secrets {
			require.NotContains(t, string(after200), v)
		}
	})
	t.Run("the scrape counts what the run did", func(t *testing.T) {
		for series, want := range map[string]float64{
			`cardvault_http_requests_total{code="201",method="POST",route="/tokens"}`:                210,
			`cardvault_http_requests_total{code="200",method="POST",route="/tokens/:id/detokenize"}`: 210,
			`cardvault_http_requests_total{code="404",method="GET",route="/tokens/:id"}`:             210,
			`cardvault_http_requests_total{code="404",method="GET",route="unmatched"}`:               2,
			`cardvault_http_refusals_total{reason="auth_failures"}`:                                  2,
			`cardvault_http_refusals_total{reason="rate_limited"}`:                                   2,
			`cardvault_forwards_total{destination="dst_processor_b",outcome="unreachable"}`:          2,
		} {
			assert.Equal(t, want, metricstest.Value(t, after200, series), series)
		}
		assert.Positive(t, metricstest.Value(t, after200, `cardvault_webhook_deliveries_total{outcome="delivered"}`))
		assert.Equal(t, 210.0, metricstest.Value(t, after200, `cardvault_group_commit_batch_size_sum{batch="token_create"}`), "every token written by a group commit")
		assert.Positive(t, metricstest.Value(t, after200, `cardvault_root_kek_calls_total{op="encrypt",outcome="ok"}`), "42 tenants' keysets wrapped")
		assert.Positive(t, metricstest.Value(t, after200, `cardvault_db_pool_acquires_total`))
	})
	t.Run("the database's state is read at scrape time, cached for a few seconds", func(t *testing.T) {
		var scrape []byte
		waitFor(t, 2*metrics.DefaultStateCache, "a scrape past the cache", func() bool {
			scrape = metricstest.Scrape(t, r.metricsURL())
			return metricstest.Value(t, scrape, "cardvault_tenants") == 42
		})
		assert.Equal(t, 1.0, metricstest.Value(t, scrape, "cardvault_state_up"))
		assert.Zero(t, metricstest.Value(t, scrape, "cardvault_webhook_outbox_pending"), "every event delivered")
		assert.Zero(t, metricstest.Value(t, scrape, "cardvault_data_keys_overdue"))
	})
	t.Run("promtool check metrics passes", func(t *testing.T) {
		metricstest.CheckMetrics(t, after200)
	})
	t.Run("the dashboard and the alerts use only metrics the vault exports", func(t *testing.T) {
		exported := metricstest.Names(after200)
		for _, doc := range []string{"../../docs/grafana-dashboard.json", "../../docs/alerts.yml"} {
			names := metricNamesIn(t, doc)
			require.NotEmpty(t, names, doc)
			for _, n := range names {
				assert.True(t, exported[n], "%s uses %s, which the vault does not export", doc, n)
			}
		}
	})
	t.Run("the API listener does not serve metrics", func(t *testing.T) {
		res, err := http.Get(r.sv.url + "/metrics")
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusNotFound, res.StatusCode)
	})
}

// missing returns the series of a not in b.
func missing(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}

// metricName matches a metric name of the vault, the Go runtime or the
// process in a query.
var metricName = regexp.MustCompile(`\b(?:cardvault|go|process)_[a-z0-9_]+\b`)

// metricNamesIn returns every metric name the queries of a dashboard (its
// "expr" fields) or a rules file (all of it) use.
func metricNamesIn(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(b)
	if json.Valid(b) {
		var exprs []string
		collectExprs(t, b, &exprs)
		require.NotEmpty(t, exprs, "%s has no queries", path)
		text = fmt.Sprint(exprs)
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range metricName.FindAllString(text, -1) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// collectExprs appends every "expr" string of a JSON document to out.
func collectExprs(t *testing.T, doc []byte, out *[]string) {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(doc, &v))
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "expr" {
					*out = append(*out, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
}

func TestMetricsAreOffByDefaultAndTheirAddressIsValidated(t *testing.T) {
	tests := []struct {
		name, addr string
		wantErr    bool
	}{
		{"off", "", false},
		{"loopback", "127.0.0.1:9464", false},
		{"every interface", ":9464", false},
		{"no port", "9464", true},
		{"a URL", "http://127.0.0.1:9464/metrics", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := rawConfig{databaseURL: "postgres://x", kekURI: "local:///k.json", listen: ":8080", cvcTTL: "1h", logLevel: "info",
				cryptoperiod: "365d", keyRefresh: "2s", keyCacheTTL: "1h", auditRetention: "400d", metricsListen: tt.addr}
			cfg, err := raw.parse(true)
			if tt.wantErr {
				assert.ErrorContains(t, err, "VAULT_METRICS_LISTEN")
				return
			}
			assert.NotContains(t, fmt.Sprint(err), "VAULT_METRICS_LISTEN")
			assert.Equal(t, tt.addr, cfg.MetricsListen)
			assert.Equal(t, tt.addr == "", newTelemetry(cfg) == nil, "no address, no metrics")
		})
	}
}
