package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

func TestErrorAnswers(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	const pan = "4242424242424242"
	big := `{"card":{"number":"` + pan + `"},"metadata":{"pad":"` + strings.Repeat("x", 70<<10) + `"}}`
	tests := []struct {
		name, method, path, key, body string
		headers                       []string
		status                        int
		typ, code, param              string
	}{
		{"malformed JSON", "POST", "/cde-import", key, `{"card":{"number":"` + pan + `"`, nil, 400, "invalid_request_error", "invalid_json", ""},
		{"not an object", "POST", "/cde-import", key, `[1,2]`, nil, 400, "invalid_request_error", "parameter_invalid_type", ""},
		{"two values", "POST", "/cde-import", key, cardBody("pm_2", pan) + `{}`, nil, 400, "invalid_request_error", "invalid_json", ""},
		{"unknown field", "POST", "/cde-import", key, `{"card":{"number":"` + pan + `"},"extra":1}`, nil, 400, "invalid_request_error", "parameter_unknown", "extra"},
		{"card missing", "POST", "/cde-import", key, `{"metadata":{}}`, nil, 400, "invalid_request_error", "parameter_missing", "card"},
		{"card field of wrong type", "POST", "/cde-import", key, `{"card":{"number":["` + pan + `"]}}`, nil, 400, "invalid_request_error", "parameter_invalid_type", ""},
		{"metadata value not a string", "POST", "/cde-import", key, `{"metadata":{"a":1},"card":{"number":"` + pan + `"}}`, nil, 400, "invalid_request_error", "parameter_invalid_type", "metadata"},
		{"no API key", "POST", "/cde-import", "", cardBody("pm_1", pan), nil, 401, "authentication_error", "invalid_api_key", ""},
		{"unknown API key", "POST", "/cde-import", "cvk_0123456789abcdef_" + strings.Repeat("A", 43), cardBody("pm_1", pan), nil, 401, "authentication_error", "invalid_api_key", ""},
		{"missing scope", "POST", "/cde-import", ts.key(t, vault.ScopeTokensRead), cardBody("pm_1", pan), nil, 403, "permission_error", "missing_scope", ""},
		{"body too large", "POST", "/cde-import", key, big, nil, 413, "invalid_request_error", "body_too_large", ""},
		{"not JSON", "POST", "/cde-import", key, cardBody("pm_1", pan), []string{"Content-Type", "text/plain"}, 415, "invalid_request_error", "unsupported_media_type", ""},
		{"Luhn-invalid number", "POST", "/cde-import", key, cardBody("pm_1", "4242424242424241"), nil, 422, "invalid_request_error", "incorrect_number", "card.number"},
		{"11-digit number", "POST", "/cde-import", key, cardBody("pm_1", "42424242424"), nil, 422, "invalid_request_error", "invalid_number", "card.number"},
		{"month 13", "POST", "/tokens", key, `{"card":{"number":"` + pan + `","exp_month":"13","exp_year":"2033"}}`, nil, 422, "invalid_request_error", "invalid_expiry_month", "card.exp_month"},
		{"year 2100", "POST", "/tokens", key, `{"card":{"number":"` + pan + `","exp_month":"1","exp_year":"2100"}}`, nil, 422, "invalid_request_error", "invalid_expiry_year", "card.exp_year"},
		{"5-digit CVC", "POST", "/tokens", key, `{"card":{"number":"` + pan + `","exp_month":"1","exp_year":"2030","cvc":"12345"}}`, nil, 422, "invalid_request_error", "invalid_cvc", "card.cvc"},
		{"PAN in metadata", "POST", "/tokens", key, `{"metadata":{"note":"` + pan + `"},"card":{"number":"` + pan + `","exp_month":"1","exp_year":"2030"}}`, nil, 422, "invalid_request_error", "sensitive_data", "metadata.note"},
		{"unknown token", "GET", "/tokens/00000000-0000-4000-8000-000000000000", key, "", nil, 404, "invalid_request_error", "resource_missing", ""},
		{"malformed token id", "GET", "/tokens/" + pan, key, "", nil, 404, "invalid_request_error", "resource_missing", ""},
		{"bad limit", "GET", "/tokens?limit=0", key, "", nil, 400, "invalid_request_error", "parameter_invalid", "limit"},
		{"unknown starting_after", "GET", "/tokens?starting_after=00000000-0000-4000-8000-000000000000", key, "", nil, 400, "invalid_request_error", "parameter_invalid", "starting_after"},
		{"unknown query parameter", "GET", "/tokens?businesskey=pm_1", key, "", nil, 400, "invalid_request_error", "parameter_unknown", "businesskey"},
		{"wrong method", "PUT", "/tokens", key, "", nil, 405, "invalid_request_error", "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ts.do(t, tt.method, tt.path, tt.key, tt.body, tt.headers...)
			require.Equal(t, tt.status, res.status, "body: %s", res.body)
			assert.Equal(t, "application/json", res.header.Get("Content-Type"))
			assert.NotEmpty(t, res.header.Get("Request-Id"))
			assert.Equal(t, "no-store", res.header.Get("Cache-Control"))
			e, ok := res.json(t)["error"].(map[string]any)
			require.True(t, ok, "error shape: %s", res.body)
			assert.Equal(t, tt.typ, e["type"])
			assert.Equal(t, tt.code, e["code"])
			if tt.param != "" {
				assert.Equal(t, tt.param, e["param"])
			}
			assert.NotEmpty(t, e["message"])
			assert.NotContains(t, string(res.body), pan, "an error never echoes the card number")
			assert.NotContains(t, string(res.body), "4242424242424241")
		})
	}
	assert.NotContains(t, ts.log.String(), pan)
}

func TestScopesAreEnforcedPerRoute(t *testing.T) {
	ts := newTestServer(t)
	owner := ts.key(t)
	id := ts.do(t, http.MethodPost, "/tokens", owner, cardBody("pm_scope", "4242424242424242")).json(t)["id"].(string)
	// A key of the same tenant with every scope but the one a route needs.
	tenant := vaultActorTenant(t, ts, owner)
	routes := []struct {
		method, path, body string
		scope              vault.Scope
	}{
		{"POST", "/cde-import", cardBody("pm_s1", "4242424242424242"), vault.ScopeTokensCreate},
		{"POST", "/tokens", cardBody("pm_s2", "4242424242424242"), vault.ScopeTokensCreate},
		{"GET", "/tokens", "", vault.ScopeTokensRead},
		{"GET", "/tokens/" + id, "", vault.ScopeTokensRead},
		{"POST", "/tokens/" + id + "/detokenize", "", vault.ScopeTokensReveal},
		{"DELETE", "/tokens/" + id, "", vault.ScopeTokensDelete},
		{"GET", "/audit-events", "", vault.ScopeAuditRead},
		{"GET", "/keys", "", vault.ScopeKeysManage},
		{"POST", "/keys/rotate", "", vault.ScopeKeysManage},
		{"POST", "/keys/reencrypt", "", vault.ScopeKeysManage},
	}
	for _, r := range routes {
		t.Run(r.method+" "+r.path+" needs "+string(r.scope), func(t *testing.T) {
			without := keyWithout(t, ts, tenant, r.scope)
			res := ts.do(t, r.method, r.path, without, r.body)
			assert.Equal(t, http.StatusForbidden, res.status, "body: %s", res.body)
			with := keyWith(t, ts, tenant, r.scope)
			res = ts.do(t, r.method, r.path, with, r.body)
			assert.Less(t, res.status, 300, "body: %s", res.body)
		})
	}
}

func TestOtherTenantsTokensAreUnknown(t *testing.T) {
	ts := newTestServer(t)
	mine, theirs := ts.key(t), ts.key(t)
	id := ts.do(t, http.MethodPost, "/tokens", mine, cardBody("pm_mine", "4242424242424242")).json(t)["id"].(string)
	unknown := ts.do(t, http.MethodGet, "/tokens/00000000-0000-4000-8000-000000000000", theirs, "")
	for _, r := range []struct{ method, path string }{
		{"GET", "/tokens/" + id}, {"POST", "/tokens/" + id + "/detokenize"}, {"DELETE", "/tokens/" + id},
	} {
		res := ts.do(t, r.method, r.path, theirs, "")
		assert.Equal(t, http.StatusNotFound, res.status, r.method)
		assert.Equal(t, unknown.json(t)["error"], res.json(t)["error"], "foreign looks exactly like unknown")
	}
	list := ts.do(t, http.MethodGet, "/tokens?business_key=pm_mine", theirs, "").json(t)
	assert.Empty(t, list["data"])
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/tokens/"+id, mine, "").status)
}
