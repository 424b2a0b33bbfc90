package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
)

// expose returns what GET /metrics answers for reg, in the text format.
func expose(t *testing.T, reg *prometheus.Registry) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code, rec.Body.String())
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return body
}

// seriesWith returns the series of exposition whose text contains every
// one of parts.
func seriesWith(exposition []byte, parts ...string) []string {
	var out []string
	for _, s := range metricstest.Series(exposition) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(s, p)
		}
		if all {
			out = append(out, s)
		}
	}
	return out
}

func TestNilRecordersRecordNothing(t *testing.T) {
	var (
		h  *metrics.HTTP
		rt *metrics.RouteTable
		s  *metrics.Store
		im *metrics.Imports
		ex *metrics.Exports
		w  *metrics.Webhooks
		f  *metrics.Forwards
	)
	calls := map[string]func(){
		"HTTP.Refused":              func() { h.Refused(metrics.RefusedOverloaded) },
		"HTTP.Start/Done":           func() { h.Start(); h.Done() },
		"HTTP.Routes":               func() { assert.Nil(t, h.Routes([]metrics.Pattern{{Method: "GET", Path: "/x"}})) },
		"RouteTable.Lookup.Observe": func() { rt.Lookup("GET", "/x").Observe(200, time.Millisecond) },
		"Store.BatchSizes":          func() { s.BatchSizes(metrics.BatchTokenCreate).Observe(3) },
		"Store.KeyCache":            func() { s.KeyCacheHit(); s.KeyCacheMiss() },
		"Store.KEKAvailable":        func() { s.KEKAvailable(false) },
		"Store.CVCSweep":            func() { s.CVCSweep(4, nil) },
		"Store.Reencrypted":         func() { s.Reencrypted(5) },
		"Store.CountKEK":            func() { assert.Nil(t, s.CountKEK(nil)) },
		"Imports.Items":             func() { im.Items(metrics.ItemSucceeded, 1) },
		"Exports.Items":             func() { ex.Items(metrics.ItemSucceeded, 1) },
		"Webhooks.Attempted":        func() { w.Attempted(metrics.Delivered, true, time.Second) },
		"Forwards.ForwardObserved":  func() { f.ForwardObserved("dst_1", metrics.ForwardOK, time.Second) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) { assert.NotPanics(t, call) })
	}
}

func TestRoutesAreLabelledByPatternNeverByURL(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := metrics.NewHTTP(reg)
	table := h.Routes([]metrics.Pattern{{Method: "GET", Path: "/tokens/:id"}, {Method: "POST", Path: "/tokens"}})
	tests := []struct {
		method, path string
		code         int
		wantRoute    string
		wantMethod   string
	}{
		{"GET", "/tokens/:id", 200, "/tokens/:id", "GET"},
		{"GET", "/tokens/:id", 404, "/tokens/:id", "GET"},
		{"POST", "/tokens", 201, "/tokens", "POST"},
		{"DELETE", "/tokens", 405, metrics.Unmatched, "DELETE"},
		{"GET", "/tokens/4f1c2a60-2c8e-4b8e-9a37-8f4f8d3a9e11", 404, metrics.Unmatched, "GET"},
		{"GET", "", 404, metrics.Unmatched, "GET"},
		{"BREW", "/coffee", 404, metrics.Unmatched, "OTHER"},
	}
	for _, tt := range tests {
		table.Lookup(tt.method, tt.path).Observe(tt.code, 3*time.Millisecond)
	}
	out := expose(t, reg)
	for _, tt := range tests {
		want := []string{"cardvault_http_requests_total{", `route="` + tt.wantRoute + `"`, `method="` + tt.wantMethod + `"`}
		assert.Len(t, seriesWith(out, append(want, `code="`+strconv.Itoa(tt.code)+`"`)...), 1, "%s %s", tt.method, tt.path)
	}
	assert.NotContains(t, string(out), "4f1c2a60", "a URL never becomes a label")
	assert.NotContains(t, string(out), "coffee")
	assert.NotContains(t, string(out), "BREW")
}

func TestRecordingAllocatesNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, s, im := metrics.NewHTTP(reg), metrics.NewStore(reg), metrics.NewImports(reg)
	w, f, ex := metrics.NewWebhooks(reg), metrics.NewForwards(reg, 0), metrics.NewExports(reg)
	table := h.Routes([]metrics.Pattern{{Method: "GET", Path: "/tokens/:id"}})
	table.Lookup("GET", "/tokens/:id").Observe(200, time.Millisecond) // the first request of a code resolves it
	f.ForwardObserved("dst_1", metrics.ForwardOK, time.Millisecond)   // the first forward resolves the destination
	sizes := s.BatchSizes(metrics.BatchTokenRead)
	calls := map[string]func(){
		"request":     func() { h.Start(); table.Lookup("GET", "/tokens/:id").Observe(200, time.Millisecond); h.Done() },
		"unmatched":   func() { table.Lookup("GET", "/nowhere").Observe(404, time.Millisecond) },
		"refusal":     func() { h.Refused(metrics.RefusedRateLimited) },
		"batch size":  func() { sizes.Observe(7) },
		"key cache":   func() { s.KeyCacheHit() },
		"import item": func() { im.Items(metrics.ItemRetried, 1) },
		"export item": func() { ex.Items(metrics.ItemRetried, 1) },
		"webhook":     func() { w.Attempted(metrics.Retrying, true, time.Millisecond) },
		"forward":     func() { f.ForwardObserved("dst_1", metrics.ForwardOK, time.Millisecond) },
	}
	for name, call := range calls {
		assert.Zero(t, testing.AllocsPerRun(1000, call), "%s allocates", name)
	}
}

func TestForwardsBoundTheirDestinationsAndRefuseCardNumbers(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxIDs = 5
	f := metrics.NewForwards(reg, maxIDs)
	for i := range 3 * maxIDs {
		f.ForwardObserved("dst_"+strconv.Itoa(i+1), metrics.ForwardOK, 20*time.Millisecond)
	}
	refused := []struct{ name, id string }{
		{"a card number", "4242424242424242"},
		{"a card number inside", "dst_4000056655665556"},
		{"a URL", "https://processor.example/charge"},
		{"spaces", "my destination"},
		{"empty", ""},
		{"too long", strings.Repeat("d", 65)},
	}
	for _, r := range refused {
		f.ForwardObserved(r.id, metrics.ForwardUnreachable, 0)
	}
	f.ForwardObserved("dst_1", "exploded", time.Millisecond)
	out := expose(t, reg)

	destinations := map[string]bool{}
	for _, s := range seriesWith(out, "cardvault_forwards_total{") {
		destinations[between(s, `destination="`, `"`)] = true
	}
	assert.LessOrEqual(t, len(destinations), maxIDs+2, "at most the cap, other and invalid: %v", destinations)
	assert.True(t, destinations[metrics.DestinationOther], "ids past the cap are counted as other")
	assert.True(t, destinations[metrics.DestinationInvalid])
	for _, r := range refused[:3] {
		assert.NotContains(t, string(out), r.id, "%s is never a label", r.name)
	}
	assert.Len(t, seriesWith(out, `destination="invalid"`, `outcome="unreachable"`), 1)
	assert.Equal(t, float64(len(refused)), metricstest.Value(t, out, `cardvault_forwards_total{destination="invalid",outcome="unreachable"}`))
	assert.Len(t, seriesWith(out, `destination="dst_1"`, `outcome="other"`), 1, "an unknown outcome is other")
	assert.NotContains(t, string(out), "exploded")
}

// between returns what s holds between the first from and the next to.
func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

// fakeKEK is a root KEK that fails while down.
type fakeKEK struct{ down bool }

func (k *fakeKEK) Encrypt(pt, _ []byte) ([]byte, error) {
	if k.down {
		return nil, errors.New("kms unavailable")
	}
	return append([]byte("ct:"), pt...), nil
}

func (k *fakeKEK) Decrypt(ct, _ []byte) ([]byte, error) {
	if k.down {
		return nil, errors.New("kms unavailable")
	}
	return bytes.TrimPrefix(ct, []byte("ct:")), nil
}

func TestRootKEKCallsAreCountedByOperationAndOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := metrics.NewStore(reg)
	raw := &fakeKEK{}
	kek := s.CountKEK(raw)
	ct, err := kek.Encrypt([]byte("keyset"), nil)
	require.NoError(t, err)
	pt, err := kek.Decrypt(ct, nil)
	require.NoError(t, err)
	assert.Equal(t, "keyset", string(pt), "the counted KEK is the KEK")
	raw.down = true
	_, err = kek.Decrypt(ct, nil)
	assert.Error(t, err)
	s.KEKAvailable(false)
	out := expose(t, reg)
	for series, want := range map[string]float64{
		`cardvault_root_kek_calls_total{op="encrypt",outcome="ok"}`:    1,
		`cardvault_root_kek_calls_total{op="decrypt",outcome="ok"}`:    1,
		`cardvault_root_kek_calls_total{op="decrypt",outcome="error"}`: 1,
		`cardvault_root_kek_calls_total{op="encrypt",outcome="error"}`: 0,
		`cardvault_root_kek_call_duration_seconds_count{op="decrypt"}`: 2,
		`cardvault_root_kek_up`: 0,
	} {
		assert.Equal(t, want, metricstest.Value(t, out, series), series)
	}
}

// fakeState is a StateSource counting its reads; it fails with err, or
// blocks until its context ends when block is set.
type fakeState struct {
	reads atomic.Int32
	err   error
	block bool
	st    metrics.State
}

func (f *fakeState) MetricsState(ctx context.Context, _ time.Duration) (metrics.State, error) {
	f.reads.Add(1)
	if f.block {
		<-ctx.Done()
		return metrics.State{}, ctx.Err()
	}
	return f.st, f.err
}

// clock is a settable clock for the state collector's cache.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestStateIsCachedForAFewSecondsAndBoundedByATimeout(t *testing.T) {
	tests := []struct {
		name      string
		src       *fakeState
		wantUp    float64
		wantState bool
	}{
		{"answers", &fakeState{st: metrics.State{OutboxPending: 3, AuditUnchained: 2,
			ImportJobs: map[string]int64{"running": 1, "bogus": 9}}}, 1, true},
		{"fails", &fakeState{err: errors.New("database down")}, 0, false},
		{"hangs", &fakeState{block: true}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
			reg := prometheus.NewRegistry()
			reg.MustRegister(metrics.NewStateCollector(tt.src, metrics.StateOptions{Cryptoperiod: 365 * 24 * time.Hour,
				Timeout: 50 * time.Millisecond, CacheFor: 5 * time.Second, Now: c.Now}))
			start := time.Now()
			out := expose(t, reg)
			assert.Less(t, time.Since(start), 5*time.Second, "the read is bounded by its timeout")
			assert.Equal(t, tt.wantUp, metricstest.Value(t, out, "cardvault_state_up"))
			assert.Equal(t, tt.wantState, len(seriesWith(out, "cardvault_webhook_outbox_pending")) == 1)
			assert.Equal(t, float64(365*24*3600), metricstest.Value(t, out, "cardvault_key_cryptoperiod_seconds"))
			if tt.wantState {
				assert.Equal(t, 3.0, metricstest.Value(t, out, "cardvault_webhook_outbox_pending"))
				assert.Equal(t, 1.0, metricstest.Value(t, out, `cardvault_import_jobs{status="running"}`))
				assert.NotContains(t, string(out), "bogus", "only the known statuses are labels")
			}
			expose(t, reg)
			assert.EqualValues(t, 1, tt.src.reads.Load(), "a second scrape within the cache time reads nothing")
			c.now = c.now.Add(6 * time.Second)
			expose(t, reg)
			assert.EqualValues(t, 2, tt.src.reads.Load(), "after it, the state is read again")
		})
	}
}

func TestPoolStatsAreExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewPoolCollector(func() metrics.PoolStats {
		return metrics.PoolStats{Acquired: 3, Idle: 5, Max: 32, Acquires: 100, WaitedAcquires: 7, WaitTime: 1500 * time.Millisecond}
	}))
	out := expose(t, reg)
	for series, want := range map[string]float64{
		`cardvault_db_pool_connections{state="acquired"}`: 3,
		`cardvault_db_pool_connections{state="idle"}`:     5,
		`cardvault_db_pool_max_connections`:               32,
		`cardvault_db_pool_waited_acquires_total`:         7,
		`cardvault_db_pool_acquire_wait_seconds_total`:    1.5,
	} {
		assert.Equal(t, want, metricstest.Value(t, out, series), series)
	}
	assert.Equal(t, 8, testutil.CollectAndCount(metrics.NewPoolCollector(func() metrics.PoolStats { return metrics.PoolStats{} })),
		"three connection states and five more series")
}

func TestEveryRecorderPassesPromtoolCheckMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, metrics.RegisterRuntime(reg))
	h, s, im := metrics.NewHTTP(reg), metrics.NewStore(reg), metrics.NewImports(reg)
	w, f, ex := metrics.NewWebhooks(reg), metrics.NewForwards(reg, 0), metrics.NewExports(reg)
	reg.MustRegister(metrics.NewStateCollector(&fakeState{st: metrics.State{ImportJobs: map[string]int64{"running": 1}}},
		metrics.StateOptions{Cryptoperiod: time.Hour}))
	reg.MustRegister(metrics.NewPoolCollector(func() metrics.PoolStats { return metrics.PoolStats{Max: 4} }))
	h.Routes([]metrics.Pattern{{Method: "POST", Path: "/tokens"}}).Lookup("POST", "/tokens").Observe(201, time.Millisecond)
	h.Refused(metrics.RefusedRateLimited)
	s.BatchSizes(metrics.BatchTokenCreate).Observe(12)
	s.KeyCacheMiss()
	s.CVCSweep(3, nil)
	s.Reencrypted(10)
	im.Items(metrics.ItemSkipped, 2)
	ex.Items(metrics.ItemFailed, 1)
	w.Attempted(metrics.GaveUp, true, time.Second)
	f.ForwardObserved("dst_1", metrics.ForwardDestination, 300*time.Millisecond)
	metricstest.CheckMetrics(t, expose(t, reg))
}

// TestExportItemsCountOnlyTheirOutcomes: export attempts are counted as
// succeeded, failed or retried; an outcome exports do not have (throttled,
// skipped) is no series.
func TestExportItemsCountOnlyTheirOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	ex := metrics.NewExports(reg)
	ex.Items(metrics.ItemSucceeded, 3)
	ex.Items(metrics.ItemRetried, 2)
	ex.Items(metrics.ItemSkipped, 5)
	ex.Items(metrics.ItemThrottled, 5)
	out := expose(t, reg)
	assert.Equal(t, 3.0, metricstest.Value(t, out, `cardvault_export_items_total{outcome="succeeded"}`))
	assert.Equal(t, 2.0, metricstest.Value(t, out, `cardvault_export_items_total{outcome="retried"}`))
	assert.Equal(t, 0.0, metricstest.Value(t, out, `cardvault_export_items_total{outcome="failed"}`))
	assert.Len(t, seriesWith(out, "cardvault_export_items_total{"), 3, "succeeded, failed, retried")
}
