package httpapi_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// safetyServer is a test server built with options and test-only routes,
// with a pool for looking at what the vault stored.
type safetyServer struct {
	*testServer
	pool *pgxpool.Pool
}

// newSafetyServer starts the real server on loopback with opts; routes
// registers test-only routes before it serves.
func newSafetyServer(t *testing.T, opts []httpapi.Option, routes func(*httpapi.Server)) *safetyServer {
	t.Helper()
	ts := &testServer{clock: vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)), log: &lockedBuffer{}}
	logger := slog.New(slog.NewJSONHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts.svc = vaulttest.NewService(t, dbURL, vaulttest.Options{Now: ts.clock.Now, Logger: logger})
	srv := httpapi.New(ts.svc, logger, opts...)
	if routes != nil {
		routes(srv)
	}
	ts.serve(t, srv)
	return &safetyServer{testServer: ts, pool: vaulttest.Pool(t, dbURL)}
}

// count runs a count(*) query.
func (ss *safetyServer) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, ss.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func (ss *safetyServer) tokenRows(t *testing.T, tenant uuid.UUID) int {
	t.Helper()
	return ss.count(t, `SELECT count(*) FROM tokens WHERE tenant_id = $1`, tenant)
}

func (ss *safetyServer) audited(t *testing.T, tenant uuid.UUID, action vault.Action) int {
	t.Helper()
	return ss.count(t, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = $2`, tenant, string(action))
}

func (ss *safetyServer) idempotencyRows(t *testing.T, tenant uuid.UUID) int {
	t.Helper()
	return ss.count(t, `SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1`, tenant)
}

// errorCode returns the type and code of an error answer.
func errorCode(t *testing.T, r response) (string, string) {
	t.Helper()
	e, ok := r.json(t)["error"].(map[string]any)
	require.True(t, ok, "error shape: %s", r.body)
	typ, _ := e["type"].(string)
	code, _ := e["code"].(string)
	return typ, code
}

const (
	visaPAN = "4242424242424242"
	mcPAN   = "5555555555554444"
)

// idem is the Idempotency-Key header pair for ts.do.
func idem(key string) []string { return []string{httpapi.HeaderIdempotencyKey, key} }

func TestIdempotentRetryReplaysTheFirstAnswer(t *testing.T) {
	ss := newSafetyServer(t, nil, nil)
	tests := []struct {
		name, path, body string
		status           int
		tokens, creates  int // rows for the tenant after both requests
	}{
		{"Stripe forward", "/cde-import", cardBody("pm_replay", visaPAN), 201, 1, 1},
		{"merchant tokenize without business key", "/tokens", `{"card":{"number":"` + mcPAN + `","exp_month":"4","exp_year":"2033"}}`, 201, 1, 1},
		{"4xx answers are kept too", "/tokens", cardBody("pm_bad", "4242424242424241"), 422, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant, key := vaulttest.Tenant(t, ss.svc)
			k := uuid.NewString()
			first := ss.do(t, "POST", tt.path, key, tt.body, idem(k)...)
			require.Equal(t, tt.status, first.status, "body: %s", first.body)
			assert.Empty(t, first.header.Get(httpapi.HeaderIdempotentReplayed))

			retry := ss.do(t, "POST", tt.path, key, tt.body, idem(k)...)
			assert.Equal(t, first.status, retry.status)
			assert.Equal(t, string(first.body), string(retry.body), "the same body, byte for byte")
			assert.Equal(t, "true", retry.header.Get(httpapi.HeaderIdempotentReplayed))
			assert.Equal(t, "application/json", retry.header.Get("Content-Type"))
			assert.NotEqual(t, first.header.Get(httpapi.HeaderRequestID), retry.header.Get(httpapi.HeaderRequestID))

			assert.Equal(t, tt.tokens, ss.tokenRows(t, tenant))
			assert.Equal(t, tt.creates, ss.audited(t, tenant, vault.ActionTokenCreate), "the replay is not a second create")
			assert.Equal(t, 1, ss.idempotencyRows(t, tenant))
		})
	}
	t.Run("no header, no idempotency work", func(t *testing.T) {
		tenant, key := vaulttest.Tenant(t, ss.svc)
		res := ss.do(t, "POST", "/cde-import", key, cardBody("pm_plain", visaPAN))
		require.Equal(t, 201, res.status)
		assert.Zero(t, ss.idempotencyRows(t, tenant))
	})
}

func TestIdempotencyKeyWithAnotherRequestIsRefused(t *testing.T) {
	ss := newSafetyServer(t, nil, nil)
	tenant, key := vaulttest.Tenant(t, ss.svc)
	const k = "order-123"
	first := ss.do(t, "POST", "/tokens", key, cardBody("pm_1", visaPAN), idem(k)...)
	require.Equal(t, 201, first.status)
	tests := []struct{ name, path, body string }{
		{"another card", "/tokens", cardBody("pm_1", mcPAN)},
		{"another business key", "/tokens", cardBody("pm_2", visaPAN)},
		{"the same body, reformatted", "/tokens", " " + cardBody("pm_1", visaPAN)},
		{"another route", "/cde-import", cardBody("pm_1", visaPAN)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ss.do(t, "POST", tt.path, key, tt.body, idem(k)...)
			require.Equal(t, 400, res.status, "body: %s", res.body)
			typ, code := errorCode(t, res)
			assert.Equal(t, "idempotency_error", typ)
			assert.Equal(t, "idempotency_error", code)
			assert.Empty(t, res.header.Get(httpapi.HeaderIdempotentReplayed))
		})
	}
	assert.Equal(t, 1, ss.tokenRows(t, tenant), "nothing ran")
}

func TestIdempotencyKeyIsChecked(t *testing.T) {
	ss := newSafetyServer(t, nil, nil)
	tenant, key := vaulttest.Tenant(t, ss.svc)
	tests := []struct {
		name   string
		keys   []string
		status int
	}{
		{"255 characters", []string{strings.Repeat("k", 255)}, 201},
		{"empty", []string{""}, 400},
		{"256 characters", []string{strings.Repeat("k", 256)}, 400},
		{"non-ASCII", []string{"clé-1"}, 400},
		{"a tab", []string{"order\t1"}, 400},
		{"digits that look like a card number", []string{"order-" + visaPAN}, 201},
		{"two headers", []string{"a", "b"}, 400},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", ss.URL+"/tokens", strings.NewReader(cardBody(fmt.Sprintf("pm_check_%d", i), visaPAN)))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-API-Key", key)
			for _, k := range tt.keys {
				req.Header.Add(httpapi.HeaderIdempotencyKey, k)
			}
			res, err := ss.Client().Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			var body struct {
				Error map[string]any `json:"error"`
			}
			require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
			require.Equal(t, tt.status, res.StatusCode, "body: %v", body)
			if tt.status == 400 {
				assert.Equal(t, "idempotency_key_invalid", body.Error["code"])
				assert.Equal(t, "Idempotency-Key", body.Error["param"])
			}
		})
	}
	assert.Equal(t, 2, ss.tokenRows(t, tenant), "only the valid keys ran")
}

// gate is a test route's handler that blocks its first run until released,
// so that a test can act while a request is running, without sleeps.
type gate struct {
	runs     atomic.Int32
	entered  chan struct{}
	release  chan struct{}
	answer   func(run int32) (int, any)
	holdRuns int32 // runs up to this number block
}

func newGate(holdRuns int32) *gate {
	return &gate{entered: make(chan struct{}, 8), release: make(chan struct{}), holdRuns: holdRuns,
		answer: func(run int32) (int, any) { return 201, map[string]any{"run": run} }}
}

func (g *gate) handle(c echo.Context) error {
	run := g.runs.Add(1)
	if run <= g.holdRuns {
		g.entered <- struct{}{}
		<-g.release
	}
	status, body := g.answer(run)
	if err, ok := body.(error); ok {
		return err
	}
	return c.JSON(status, body)
}

// async sends a request in the background; the answer arrives on the channel.
func (ts *testServer) async(t *testing.T, method, path, key, body string, headers ...string) <-chan response {
	t.Helper()
	out := make(chan response, 1)
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	go func() {
		res, err := ts.Client().Do(req)
		if err != nil {
			out <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			b = []byte(err.Error())
		}
		out <- response{status: res.StatusCode, header: res.Header, body: b}
	}()
	return out
}

// wait returns the answer on ch, failing the test after a deadline.
func wait(t *testing.T, ch <-chan response) response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30s")
		return response{}
	}
}

func waitEntered(t *testing.T, g *gate) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler was not entered within 30s")
	}
}

func TestConcurrentRequestsWithOneKeyRunOnce(t *testing.T) {
	g := newGate(1)
	ss := newSafetyServer(t, nil, func(s *httpapi.Server) {
		s.AddTestRoute("POST", "/test/slow", vault.ScopeTokensCreate, g.handle)
	})
	_, key := vaulttest.Tenant(t, ss.svc)
	const body = `{"n":1}`
	first := ss.async(t, "POST", "/test/slow", key, body, idem("k-concurrent")...)
	waitEntered(t, g)

	tests := []struct {
		name string
		body string
		code string
		stat int
	}{
		{"the same request", body, "idempotency_key_in_use", 409},
		{"another request", `{"n":2}`, "idempotency_error", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ss.do(t, "POST", "/test/slow", key, tt.body, idem("k-concurrent")...)
			require.Equal(t, tt.stat, res.status, "body: %s", res.body)
			_, code := errorCode(t, res)
			assert.Equal(t, tt.code, code)
		})
	}

	close(g.release)
	got := wait(t, first)
	require.Equal(t, 201, got.status)
	retry := ss.do(t, "POST", "/test/slow", key, body, idem("k-concurrent")...)
	assert.Equal(t, "true", retry.header.Get(httpapi.HeaderIdempotentReplayed), "once answered, a retry replays")
	assert.JSONEq(t, string(got.body), string(retry.body))
	assert.EqualValues(t, 1, g.runs.Load(), "exactly one run")
}

func TestIdempotencyLockOfADeadRequestIsTakenOver(t *testing.T) {
	g := newGate(1)
	ss := newSafetyServer(t, nil, func(s *httpapi.Server) {
		s.AddTestRoute("POST", "/test/slow", vault.ScopeTokensCreate, g.handle)
	})
	tenant, key := vaulttest.Tenant(t, ss.svc)
	stuck := ss.async(t, "POST", "/test/slow", key, `{}`, idem("k-stale")...)
	waitEntered(t, g)

	ss.clock.Advance(vault.IdempotencyLockTimeout + time.Second)
	second := ss.do(t, "POST", "/test/slow", key, `{}`, idem("k-stale")...)
	require.Equal(t, 201, second.status, "body: %s", second.body)
	assert.JSONEq(t, `{"run":2}`, string(second.body))

	close(g.release)
	assert.Equal(t, 201, wait(t, stuck).status, "the late first run still answers its client")
	retry := ss.do(t, "POST", "/test/slow", key, `{}`, idem("k-stale")...)
	assert.JSONEq(t, `{"run":2}`, string(retry.body), "the stored answer is the new holder's")
	assert.Equal(t, 1, ss.idempotencyRows(t, tenant))
}

func TestIdempotencyKeysArePerTenant(t *testing.T) {
	ss := newSafetyServer(t, nil, nil)
	tenantA, keyA := vaulttest.Tenant(t, ss.svc)
	tenantB, keyB := vaulttest.Tenant(t, ss.svc)
	tests := []struct {
		name     string
		sameBody bool
	}{
		{"same body", true},
		{"another body", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := fmt.Sprintf("shared-key-%d", i)
			bodyA := cardBody(fmt.Sprintf("pm_shared_%d", i), visaPAN)
			a := ss.do(t, "POST", "/tokens", keyA, bodyA, idem(k)...)
			require.Equal(t, 201, a.status)
			bodyB := bodyA
			if !tt.sameBody {
				bodyB = cardBody(fmt.Sprintf("pm_other_%d", i), mcPAN)
			}
			b := ss.do(t, "POST", "/tokens", keyB, bodyB, idem(k)...)
			require.Equal(t, 201, b.status, "tenant B runs fresh: body %s", b.body)
			assert.Empty(t, b.header.Get(httpapi.HeaderIdempotentReplayed))
			assert.NotEqual(t, a.json(t)["id"], b.json(t)["id"])
		})
	}
	assert.Equal(t, 2, ss.tokenRows(t, tenantA))
	assert.Equal(t, 2, ss.tokenRows(t, tenantB))
}

func TestExpiredIdempotencyKeysAreIgnoredAndSwept(t *testing.T) {
	ss := newSafetyServer(t, nil, nil)
	tenant, key := vaulttest.Tenant(t, ss.svc)
	first := ss.do(t, "POST", "/tokens", key, cardBody("pm_day1", visaPAN), idem("daily")...)
	require.Equal(t, 201, first.status)

	ss.clock.Advance(vault.IdempotencyTTL - time.Second)
	still := ss.do(t, "POST", "/tokens", key, cardBody("pm_day2", mcPAN), idem("daily")...)
	require.Equal(t, 400, still.status, "within 24 h the key is bound to its first request")

	ss.clock.Advance(time.Second)
	again := ss.do(t, "POST", "/tokens", key, cardBody("pm_day2", mcPAN), idem("daily")...)
	require.Equal(t, 201, again.status, "after 24 h the key is free: body %s", again.body)
	assert.Empty(t, again.header.Get(httpapi.HeaderIdempotentReplayed))
	assert.Equal(t, 2, ss.tokenRows(t, tenant))

	ss.clock.Advance(vault.IdempotencyTTL)
	n, err := ss.svc.PruneIdempotencyKeys(context.Background())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(1))
	assert.Zero(t, ss.idempotencyRows(t, tenant))
}

func TestIdempotencyNeverStoresCardData(t *testing.T) {
	leaky := newGate(0)
	leaky.answer = func(int32) (int, any) { return 200, map[string]any{"oops": visaPAN} }
	failing := newGate(0)
	failing.answer = func(run int32) (int, any) {
		if run == 1 {
			return 0, vault.Internal(fmt.Errorf("transient"))
		}
		return 201, map[string]any{"run": run}
	}
	ss := newSafetyServer(t, nil, func(s *httpapi.Server) {
		s.AddTestRoute("POST", "/test/leaky", vault.ScopeTokensCreate, leaky.handle)
		s.AddTestRoute("POST", "/test/failing", vault.ScopeTokensCreate, failing.handle)
	})
	tenant, key := vaulttest.Tenant(t, ss.svc)
	created := ss.do(t, "POST", "/tokens", key, cardBody("pm_reveal", visaPAN), idem("create-"+visaPAN)...)
	require.Equal(t, 201, created.status)
	id := created.json(t)["id"].(string)

	t.Run("detokenize answers are never stored", func(t *testing.T) {
		for range 2 {
			res := ss.do(t, "POST", "/tokens/"+id+"/detokenize", key, `{"reason":"charge"}`, idem("reveal-1")...)
			require.Equal(t, 200, res.status, "body: %s", res.body)
			assert.Contains(t, string(res.body), visaPAN, "the client gets the card")
			assert.Empty(t, res.header.Get(httpapi.HeaderIdempotentReplayed), "a retry runs again")
		}
		assert.Equal(t, 2, ss.audited(t, tenant, vault.ActionTokenReveal), "and is audited again")
	})
	t.Run("an answer holding a card number is not stored", func(t *testing.T) {
		for range 2 {
			res := ss.do(t, "POST", "/test/leaky", key, `{}`, idem("leaky-1")...)
			require.Equal(t, 200, res.status)
			assert.Empty(t, res.header.Get(httpapi.HeaderIdempotentReplayed))
		}
		assert.EqualValues(t, 2, leaky.runs.Load())
	})
	t.Run("5xx answers are not stored", func(t *testing.T) {
		first := ss.do(t, "POST", "/test/failing", key, `{}`, idem("failing-1")...)
		require.Equal(t, 500, first.status)
		second := ss.do(t, "POST", "/test/failing", key, `{}`, idem("failing-1")...)
		require.Equal(t, 201, second.status, "the retry runs")
		third := ss.do(t, "POST", "/test/failing", key, `{}`, idem("failing-1")...)
		assert.Equal(t, "true", third.header.Get(httpapi.HeaderIdempotentReplayed))
		assert.EqualValues(t, 2, failing.runs.Load())
	})

	// Every column of every row, as PostgreSQL prints it (bytea in hex).
	rows, err := ss.pool.Query(context.Background(),
		`SELECT k::text, response_body FROM idempotency_keys k WHERE tenant_id = $1`, tenant)
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var row string
		var body []byte
		require.NoError(t, rows.Scan(&row, &body))
		n++
		for _, s := range []string{row, string(body)} {
			assert.NotContains(t, s, visaPAN)
			assert.NotContains(t, s, hex.EncodeToString([]byte(visaPAN)))
			assert.NotContains(t, s, "create-", "the client's key is kept only as a keyed hash")
			assert.NotContains(t, s, hex.EncodeToString([]byte("create-")))
		}
		assert.NotContains(t, string(body), `"cvc"`)
		assert.NotContains(t, string(body), `"number"`)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, 2, n, "only the masked create and the retried failure are kept")
}

// TestIdempotencyUnderConcurrencyRunsOnce fires many identical keyed
// requests at once: exactly one token is made, every 2xx carries it.
func TestIdempotencyUnderConcurrencyRunsOnce(t *testing.T) {
	ss := newSafetyServer(t, nil, nil)
	tenant, key := vaulttest.Tenant(t, ss.svc)
	const n = 16
	var wg sync.WaitGroup
	answers := make([]response, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = ss.do(t, "POST", "/cde-import", key, cardBody("pm_storm", visaPAN), idem("storm")...)
		}()
	}
	close(start)
	wg.Wait()
	ids := map[any]bool{}
	for _, a := range answers {
		switch a.status {
		case 201:
			ids[a.json(t)["id"]] = true
		case 409:
			_, code := errorCode(t, a)
			assert.Equal(t, "idempotency_key_in_use", code)
		default:
			t.Errorf("unexpected answer %d: %s", a.status, a.body)
		}
	}
	assert.Len(t, ids, 1, "every success names the one token")
	assert.Equal(t, 1, ss.tokenRows(t, tenant))
	assert.Equal(t, 1, ss.audited(t, tenant, vault.ActionTokenCreate))
}
