package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// breaches collects what a contract reports instead of failing the test,
// so that a test can prove the contract catches a breach.
type breaches struct {
	mu   sync.Mutex
	errs []error
}

func (b *breaches) add(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, err)
}

// take returns the breaches reported so far and forgets them.
func (b *breaches) take() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errs
	b.errs = nil
	return out
}

func TestTheContractFailsAFieldTheDocumentDoesNotDeclare(t *testing.T) {
	var answer map[string]any
	var b breaches
	ts := &testServer{log: &lockedBuffer{}}
	ts.svc = vaulttest.NewService(t, dbURL, vaulttest.Options{})
	srv := httpapi.New(ts.svc, slog.New(slog.DiscardHandler))
	srv.AddTestRoute(http.MethodPost, "/test/declared", vault.ScopeTokensCreate, func(c echo.Context) error {
		return c.JSON(http.StatusOK, answer)
	})
	ts.srv, ts.Server = srv, httptest.NewServer(newContract(t, b.add).wrap(srv))
	t.Cleanup(ts.Close)
	_, key := vaulttest.Tenant(t, ts.svc)

	tests := []struct {
		name   string
		answer map[string]any
		breach string // "" when the answer keeps the contract
	}{
		{"the declared shape", map[string]any{"id": "tok_1"}, ""},
		{"a field added to the handler only", map[string]any{"id": "tok_1", "last_four": "4242"}, `additional properties 'last_four' not allowed`},
		{"a declared field dropped", map[string]any{}, `missing property 'id'`},
		{"a declared field of another type", map[string]any{"id": 7}, `got number, want string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer = tt.answer
			res := ts.do(t, http.MethodPost, "/test/declared", key, `{}`)
			require.Equal(t, http.StatusOK, res.status, "the client still gets the answer: %s", res.body)
			got := b.take()
			if tt.breach == "" {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "the breach is reported once")
			assert.ErrorContains(t, got[0], tt.breach)
			assert.ErrorContains(t, got[0], "POST /test/declared answered 200")
		})
	}
}

// recorded is a real answer of the API, to break in one way at a time.
type recorded struct {
	method, path string
	answer
}

// record sends a request to ts and keeps its answer.
func record(t *testing.T, ts *testServer, method, path, key, body string) recorded {
	t.Helper()
	res := ts.do(t, method, path, key, body)
	return recorded{method: method, path: path, answer: answer{status: res.status, header: res.header, body: res.body}}
}

// withBody returns r with its JSON object body changed by edit.
func (r recorded) withBody(t *testing.T, edit func(map[string]any)) recorded {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m))
	edit(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	r.body = b
	return r
}

func TestTheContractFailsAnswersTheDocumentDoesNotDescribe(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	created := record(t, ts, http.MethodPost, "/tokens", key, cardBody("pm_contract", "4242424242424242"))
	require.Equal(t, http.StatusCreated, created.status, "body: %s", created.body)
	var tok struct{ ID string }
	require.NoError(t, json.Unmarshal(created.body, &tok))
	read := record(t, ts, http.MethodGet, "/tokens/"+tok.ID, key, "")
	list := record(t, ts, http.MethodGet, "/tokens?limit=1", key, "")
	deleted := record(t, ts, http.MethodDelete, "/tokens/"+tok.ID, key, "")
	missing := record(t, ts, http.MethodGet, "/tokens/"+tok.ID, key, "")
	require.Equal(t, http.StatusNotFound, missing.status)

	tests := []struct {
		name   string
		got    recorded
		breach string // "" for the real answers, which keep the contract
	}{
		{"the real token", read, ""},
		{"the real 404", missing, ""},
		{"the real 204", deleted, ""},
		{"the real list", list, ""},
		{"another list object", list.withBody(t, func(m map[string]any) { m["object"] = "page" }), "object"},
		{"a list item with a new field", list.withBody(t, func(m map[string]any) { m["data"].([]any)[0].(map[string]any)["cvc"] = "123" }), "cvc"},
		{"a new field in the token", read.withBody(t, func(m map[string]any) { m["pan"] = "4242424242424242" }), `property "pan" is unsupported`},
		{"a field gone from the token", read.withBody(t, func(m map[string]any) { delete(m, "fingerprint") }), `property "fingerprint" is missing`},
		{"a renamed field", read.withBody(t, func(m map[string]any) {
			m["last4"] = m["account_number_last_four"]
			delete(m, "account_number_last_four")
		}), "unsupported"},
		{"a wrong type", read.withBody(t, func(m map[string]any) { m["expiry_month"] = "04" }), "must be an integer"},
		{"an unmasked number", read.withBody(t, func(m map[string]any) { m["masked_account_number"] = "4242424242424242" }), "masked_account_number"},
		{"a value outside the enum", read.withBody(t, func(m map[string]any) { m["scheme"] = "Visa Electron" }), "scheme"},
		{"another error shape", missing.withBody(t, func(m map[string]any) { m["error"] = "no such token" }), "error"},
		{"an extra field in the error", missing.withBody(t, func(m map[string]any) { m["error"].(map[string]any)["pan"] = "4242" }), `additional properties 'pan' not allowed`},
		{"a status the operation does not give", func() recorded { r := read; r.status = http.StatusAccepted; return r }(), "status is not supported"},
		{"a body on a 204", func() recorded { r := deleted; r.body = []byte(`{}`); return r }(), "without a body"},
		{"no Request-Id", func() recorded {
			r := read
			r.header = r.header.Clone()
			r.header.Del(httpapi.HeaderRequestID)
			return r
		}(), "Request-Id"},
		{"not JSON", func() recorded {
			r := read
			r.header = r.header.Clone()
			r.header.Set("Content-Type", "text/plain")
			return r
		}(), "Content-Type"},
		{"a 405 without Allow", func() recorded {
			r := record(t, ts, http.MethodPatch, "/tokens/"+tok.ID, key, "")
			r.header = r.header.Clone()
			r.header.Del("Allow")
			return r
		}(), "Allow"},
	}
	c := newContract(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.got.method, tt.got.path, strings.NewReader(""))
			err := c.check(req, tt.got.answer)
			if tt.breach == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.breach)
			t.Log(strings.SplitN(err.Error(), "\n", 2)[0])
		})
	}
}
