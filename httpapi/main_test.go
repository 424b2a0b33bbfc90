package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "httpapi", &dbURL) }

// lockedBuffer collects the server log across goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testServer is the real HTTP server on loopback over the package database,
// with a fixed clock and its log captured (without the PAN-masking handler,
// so a leak would show). Every answer it sends is checked against the
// OpenAPI document (validated).
type testServer struct {
	*httptest.Server
	srv   *httpapi.Server // what the server serves, under the OpenAPI contract (validated)
	svc   *postgres.Service
	clock *vaulttest.Clock
	log   *lockedBuffer
}

// newTestServer starts the test server, which may forward to loopback
// destinations over plain http; each opt adjusts the service's options
// (an egress client trusting TLS test servers, say).
func newTestServer(t *testing.T, opts ...func(*vaulttest.Options)) *testServer {
	t.Helper()
	ts := &testServer{clock: vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)), log: &lockedBuffer{}}
	logger := slog.New(slog.NewJSONHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := vaulttest.Options{Now: ts.clock.Now, Logger: logger, Egress: vaulttest.LoopbackEgress(5 * time.Second), AllowLoopback: true}
	for _, opt := range opts {
		opt(&o)
	}
	ts.svc = vaulttest.NewService(t, dbURL, o)
	ts.serve(t, httpapi.New(ts.svc, logger))
	return ts
}

// serve starts srv on loopback behind the OpenAPI contract, closed when t
// ends.
func (ts *testServer) serve(t *testing.T, srv *httpapi.Server) {
	t.Helper()
	ts.srv = srv
	ts.Server = httptest.NewServer(validated(t, srv))
	t.Cleanup(ts.Close)
}

// key returns the secret of a new tenant's API key holding scopes.
func (ts *testServer) key(t *testing.T, scopes ...vault.Scope) string {
	t.Helper()
	_, secret := vaulttest.Tenant(t, ts.svc, scopes...)
	return secret
}

// response is a completed HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// do sends a request with a JSON content type (when body is non-empty) and
// the API key, and reads the whole answer.
func (ts *testServer) do(t *testing.T, method, path, key, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// cardBody is a tokenize body in the Stripe-forward shape.
func cardBody(businessKey, number string) string {
	return `{"metadata":{"business_key":"` + businessKey + `"},"card":{"number":"` + number +
		`","exp_month":"04","exp_year":"2033","cvc":"123","name":"John Doe"}}`
}
