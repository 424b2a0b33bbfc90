package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// listIDs returns the ids of a list answer's tokens, in order.
func listIDs(t *testing.T, res response) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	m := res.json(t)
	assert.Equal(t, "list", m["object"])
	out := []string{}
	for _, d := range m["data"].([]any) {
		out = append(out, d.(map[string]any)["id"].(string))
	}
	return out
}

func TestSearchAndFingerprintFindTheTokensHoldingACard(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	first := ts.do(t, http.MethodPost, "/tokens", key, cardBody("pm_s1", "378282246310005")).json(t)
	ts.clock.Advance(time.Second)
	second := ts.do(t, http.MethodPost, "/tokens", key, cardBody("pm_s2", "378282246310005")).json(t)
	ts.do(t, http.MethodPost, "/tokens", key, cardBody("pm_s3", "371449635398431"))
	ts.do(t, http.MethodPost, "/tokens", ts.key(t), cardBody("pm_s1", "378282246310005")) // another tenant's
	both := []string{second["id"].(string), first["id"].(string)}

	tests := []struct {
		name string
		res  func() response
		want []string
	}{
		{"search by number", func() response {
			return ts.do(t, http.MethodPost, "/tokens/search", key, `{"number":"378282246310005"}`)
		}, both},
		{"search with spaces", func() response {
			return ts.do(t, http.MethodPost, "/tokens/search", key, `{"number":"3782 822463 10005"}`)
		}, both},
		{"search as a JSON number", func() response {
			return ts.do(t, http.MethodPost, "/tokens/search", key, `{"number":378282246310005}`)
		}, both},
		{"search pages", func() response {
			return ts.do(t, http.MethodPost, "/tokens/search?limit=1&starting_after="+both[0], key, `{"number":"378282246310005"}`)
		}, both[1:]},
		{"a card not held", func() response {
			return ts.do(t, http.MethodPost, "/tokens/search", key, `{"number":"6011111111111117"}`)
		}, []string{}},
		{"list by fingerprint", func() response {
			return ts.do(t, http.MethodGet, "/tokens?fingerprint="+url.QueryEscape(first["fingerprint"].(string)), key, "")
		}, both},
		{"fingerprint and business key", func() response {
			return ts.do(t, http.MethodGet, "/tokens?business_key=pm_s2&fingerprint="+first["fingerprint"].(string), key, "")
		}, both[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, listIDs(t, tt.res()))
		})
	}
}

func TestSearchIsRefusedWithoutItsScopeOrACardNumber(t *testing.T) {
	ts := newTestServer(t)
	all := ts.key(t)
	readOnly := ts.key(t, vault.ScopeTokensRead)
	tests := []struct {
		name, method, path, key, body string
		status                        int
		code, param                   string
	}{
		{"tokens:read is not tokens:search", http.MethodPost, "/tokens/search", readOnly, `{"number":"4242424242424242"}`, 403, "missing_scope", ""},
		{"no key", http.MethodPost, "/tokens/search", "", `{"number":"4242424242424242"}`, 401, "invalid_api_key", ""},
		{"Luhn-broken", http.MethodPost, "/tokens/search", all, `{"number":"4242424242424241"}`, 422, "incorrect_number", "number"},
		{"no number", http.MethodPost, "/tokens/search", all, `{}`, 422, "invalid_number", "number"},
		{"another field", http.MethodPost, "/tokens/search", all, `{"pan":"4242424242424242"}`, 400, "parameter_unknown", "pan"},
		{"a malformed fingerprint", http.MethodGet, "/tokens?fingerprint=abc", all, "", 400, "parameter_invalid", "fingerprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ts.do(t, tt.method, tt.path, tt.key, tt.body)
			require.Equal(t, tt.status, res.status, "body: %s", res.body)
			e := errorOf(t, res)
			assert.Equal(t, tt.code, e["code"])
			if tt.param != "" {
				assert.Equal(t, tt.param, e["param"])
			}
			assert.NotContains(t, string(res.body), "424242424242424", "the number is never echoed")
		})
	}
}

func TestASearchedNumberIsNeverStoredOrLogged(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	const searched = "3056930009020004" // a Diners Club test card no test here tokenizes
	for i, body := range []string{`{"number":"` + searched + `"}`, `{"number":"3056 9300 0902 0004"}`} {
		res := ts.do(t, http.MethodPost, "/tokens/search", key, body, idem(fmt.Sprintf("search-%d", i))...)
		require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	}
	for _, form := range []string{searched, "3056 9300 0902 0004", "0902 0004"} {
		assert.NotContains(t, ts.log.String(), form, "the log")
	}
	assert.NotContains(t, dumpAll(t), searched, "the database, the audit trail and stored idempotent answers included")
	assert.NotContains(t, dumpAll(t), "3056 9300", "the database")
}

func TestAnExpiredAPIKeyIsRefusedWith401(t *testing.T) {
	ts := newTestServer(t)
	tenant, _ := vaulttest.Tenant(t, ts.svc)
	secret, _, err := ts.svc.IssueAPIKey(context.Background(), vault.NewAPIKey{
		TenantID: tenant, Scopes: []vault.Scope{vault.ScopeTokensRead}, ExpiresIn: 90 * 24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/tokens", secret, "").status)

	ts.clock.Advance(90 * 24 * time.Hour)
	res := ts.do(t, http.MethodGet, "/tokens", secret, "")
	require.Equal(t, http.StatusUnauthorized, res.status, "body: %s", res.body)
	assert.Equal(t, "invalid_api_key", errorOf(t, res)["code"])
}
