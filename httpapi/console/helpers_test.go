package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/httpapi/console"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "console", &dbURL) }

// world is a vault served over loopback with the console on: the real
// HTTP server, on the package database.
type world struct {
	t      *testing.T
	svc    *postgres.Service
	srv    *httptest.Server
	tenant uuid.UUID
	key    string // every scope
}

// newWorld serves a fresh tenant's vault with the console, tuned by opts.
func newWorld(t *testing.T, opts ...httpapi.Option) *world {
	t.Helper()
	return newWorldOf(t, vaulttest.Options{}, opts...)
}

// newWorldOf is newWorld with the service tuned by vo.
func newWorldOf(t *testing.T, vo vaulttest.Options, opts ...httpapi.Option) *world {
	t.Helper()
	w := &world{t: t, svc: vaulttest.NewService(t, dbURL, vo)}
	log := slog.New(slog.DiscardHandler)
	opts = append([]httpapi.Option{httpapi.WithConsole(console.Options{})}, opts...)
	w.srv = httptest.NewServer(httpapi.New(w.svc, log, opts...))
	t.Cleanup(w.srv.Close)
	w.tenant, w.key = vaulttest.Tenant(t, w.svc)
	return w
}

// keyWith returns a new API key of w's tenant holding scopes.
func (w *world) keyWith(scopes ...vault.Scope) string {
	w.t.Helper()
	secret, _, err := w.svc.CreateAPIKey(context.Background(), w.tenant, scopes, "limited")
	require.NoError(w.t, err)
	return secret
}

// tokenize stores the public test card number under businessKey.
func (w *world) tokenize(businessKey, number string) vault.Token {
	w.t.Helper()
	a := vaulttest.Actor(w.t, w.svc, w.key)
	tok, _, err := w.svc.Tokenize(context.Background(), a, vault.TokenizeInput{BusinessKey: businessKey,
		Card: card.CardInput{Number: number, ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "John Doe"}})
	require.NoError(w.t, err)
	return tok
}

// auditRows returns the outcomes of w's tenant's audit rows of action by
// the API key id, oldest first; a row counting repeated refusals comes once
// per refusal.
func (w *world) auditRows(action vault.Action, keyID uuid.UUID) []vault.AuditEvent {
	w.t.Helper()
	require.NoError(w.t, w.svc.FlushAccessFailures(context.Background())) // refusals are counted, then written
	pool := vaulttest.Pool(w.t, dbURL)
	rows, err := pool.Query(context.Background(), `SELECT outcome, client_addr, request_id FROM audit_events,
		generate_series(1, CASE WHEN action IN ('auth.failed', 'auth.denied', 'access.failed', 'access.throttled')
		                        THEN (detail->>'count')::int ELSE 1 END)
		WHERE tenant_id = $1 AND action = $2 AND api_key_id = $3 ORDER BY id`, w.tenant, string(action), keyID)
	require.NoError(w.t, err)
	defer rows.Close()
	var out []vault.AuditEvent
	for rows.Next() {
		var ev vault.AuditEvent
		var outcome string
		require.NoError(w.t, rows.Scan(&outcome, &ev.ClientAddr, &ev.RequestID))
		ev.Outcome = vault.Outcome(outcome)
		out = append(out, ev)
	}
	require.NoError(w.t, rows.Err())
	return out
}

// keyID returns the id of the API key secret.
func (w *world) keyID(secret string) uuid.UUID {
	w.t.Helper()
	return vaulttest.Actor(w.t, w.svc, secret).APIKeyID
}

// browser is a plain HTTP client of the console that keeps its cookies
// itself: Go's cookie jar never sends Secure cookies over http://, which
// browsers do for loopback.
type browser struct {
	t       *testing.T
	base    string
	mu      sync.Mutex
	cookies map[string]*http.Cookie
	client  *http.Client
}

func (w *world) browser() *browser {
	return &browser{t: w.t, base: w.srv.URL, cookies: map[string]*http.Cookie{},
		client: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}}
}

// page is an answer of the console.
type page struct {
	status int
	header http.Header
	body   string
}

// get fetches path.
func (b *browser) get(path string) page {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil)
}

// post posts form to path.
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.do(http.MethodPost, path, form)
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	require.NoError(b.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	b.mu.Lock()
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	b.mu.Unlock()
	res, err := b.client.Do(req)
	require.NoError(b.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(b.t, err)
	b.keep(res.Cookies())
	return page{status: res.StatusCode, header: res.Header, body: string(raw)}
}

// keep stores set cookies and forgets cleared ones.
func (b *browser) keep(cs []*http.Cookie) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
			continue
		}
		b.cookies[c.Name] = c
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the forms on p.
func (b *browser) csrf(p page) string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	require.NotNil(b.t, m, "no form with a CSRF token on the page: %s", p.body)
	return m[1]
}

// signIn signs in with key and returns the overview's CSRF token.
func (b *browser) signIn(key string) string {
	b.t.Helper()
	login := b.get("/console/login")
	require.Equal(b.t, http.StatusOK, login.status)
	res := b.post("/console/login", url.Values{"csrf": {b.csrf(login)}, "api_key": {key}})
	require.Equal(b.t, http.StatusSeeOther, res.status, res.body)
	require.Equal(b.t, "/console/", res.header.Get("Location"))
	ov := b.get("/console/")
	require.Equal(b.t, http.StatusOK, ov.status, ov.body)
	return b.csrf(ov)
}
