package httpapi_test

import (
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// stripeForward builds the body exactly as Stripe's forward API does: the
// merchant's request[body] template from the reference guide, with the four
// replacements card_number, card_expiry, card_cvc and cardholder_name filled
// from the payment method.
func stripeForward(t *testing.T, pmID, number, month, year, cvc, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vaulttest.RepoRoot(t), "testdata", "stripe", "forward_body_template.json"))
	require.NoError(t, err)
	var body map[string]map[string]string
	require.NoError(t, json.Unmarshal(b, &body))
	body["metadata"]["business_key"] = pmID
	body["card"]["number"] = number
	body["card"]["exp_month"], body["card"]["exp_year"] = month, year
	body["card"]["cvc"] = cvc
	body["card"]["name"] = name
	out, err := json.Marshal(body)
	require.NoError(t, err)
	return string(out)
}

// normalize replaces the random parts of a token record so it can be
// compared with a golden file.
func normalize(body []byte) []byte {
	s := regexp.MustCompile(`"id":"[0-9a-f-]{36}"`).ReplaceAllString(string(body), `"id":"TOKEN_ID"`)
	s = regexp.MustCompile(`"fingerprint":"[A-Za-z0-9_-]+"`).ReplaceAllString(s, `"fingerprint":"FINGERPRINT"`)
	return []byte(s)
}

// golden compares got with testdata/golden/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(vaulttest.RepoRoot(t), "testdata", "golden", name)
	var pretty map[string]any
	require.NoError(t, json.Unmarshal(got, &pretty))
	got, err := json.MarshalIndent(pretty, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./httpapi -update to create it")
	assert.Equal(t, string(want), string(got))
}

func TestStripeForwardEndToEnd(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t, vault.ScopeTokensCreate)
	body := stripeForward(t, "pm_1NqStripeForward", "4242424242424242", "04", "2033", "123", "John Doe")
	headers := []string{"User-Agent", "Stripe", "Accept", "*/*"}

	res := ts.do(t, http.MethodPost, "/cde-import", key, body, headers...)
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	assert.Equal(t, "application/json", res.header.Get("Content-Type"))
	assert.Regexp(t, `^req_[0-9a-f]{24}$`, res.header.Get("Request-Id"))
	golden(t, "cde_import_created.json", normalize(res.body))
	first := res.json(t)

	again := ts.do(t, http.MethodPost, "/cde-import", key, body, headers...)
	require.Equal(t, http.StatusOK, again.status)
	assert.Equal(t, first["id"], again.json(t)["id"])

	for _, r := range []response{res, again} {
		assert.NotContains(t, string(r.body), "4242424242424242")
		assert.NotContains(t, string(r.body), `"123"`)
	}
}

func TestCDEImportAcceptsLooseSenders(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t, vault.ScopeTokensCreate)
	tests := []struct {
		name, body, masked string
		month, year        float64
		cvc                bool
		holder             any
	}{
		{"numbers, one-digit month, two-digit year",
			`{"card":{"number":4242424242424242,"exp_month":4,"exp_year":33}}`, "424242******4242", 4, 2033, false, nil},
		{"spaces and dashes in the number",
			`{"card":{"number":"3782-822463-10005","exp_month":"12","exp_year":"2030","cvc":"1234","name":""}}`, "378282*****0005", 12, 2030, true, nil},
		{"unicode name, empty cvc",
			`{"metadata":{"business_key":"pm_u","order":"A-1"},"card":{"number":"5555 5555 5555 4444","exp_month":"1","exp_year":"2031","cvc":"","name":"Zoë Ğüneş 山田"}}`,
			"555555******4444", 1, 2031, false, "Zoë Ğüneş 山田"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ts.do(t, http.MethodPost, "/cde-import", key, tt.body)
			require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
			m := res.json(t)
			assert.Equal(t, tt.masked, m["masked_account_number"])
			assert.Equal(t, tt.month, m["expiry_month"])
			assert.Equal(t, tt.year, m["expiry_year"])
			assert.Equal(t, tt.cvc, m["cvc_available"])
			assert.Equal(t, tt.holder, m["cardholder_name"])
		})
	}
}

func TestTokenLifecycleOverHTTP(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	created := ts.do(t, http.MethodPost, "/tokens", key, cardBody("pm_life", "4242424242424242")).json(t)
	id := created["id"].(string)

	got := ts.do(t, http.MethodGet, "/tokens/"+id, key, "")
	require.Equal(t, http.StatusOK, got.status)
	golden(t, "token_read.json", normalize(got.body))

	list := ts.do(t, http.MethodGet, "/tokens?business_key=pm_life&limit=5", key, "")
	require.Equal(t, http.StatusOK, list.status)
	lm := list.json(t)
	assert.Equal(t, "list", lm["object"])
	assert.Equal(t, false, lm["has_more"])
	require.Len(t, lm["data"], 1)

	reveal := ts.do(t, http.MethodPost, "/tokens/"+id+"/detokenize", key, `{"reason":"recurring charge"}`)
	require.Equal(t, http.StatusOK, reveal.status, "body: %s", reveal.body)
	rm := reveal.json(t)
	assert.Equal(t, id, rm["id"])
	assert.Equal(t, "pm_life", rm["business_key"])
	assert.Equal(t, map[string]any{"number": "4242424242424242", "exp_month": 4.0, "exp_year": 2033.0,
		"name": "John Doe", "cvc": "123"}, rm["card"])
	again := ts.do(t, http.MethodPost, "/tokens/"+id+"/detokenize", key, "")
	require.Equal(t, http.StatusOK, again.status)
	assert.Nil(t, again.json(t)["card"].(map[string]any)["cvc"], "the CVC is revealed once")

	assert.Equal(t, http.StatusNoContent, ts.do(t, http.MethodDelete, "/tokens/"+id, key, "").status)
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/tokens/"+id, key, "").status)

	events := ts.do(t, http.MethodGet, "/audit-events?limit=100", key, "").json(t)
	var actions []string
	for _, ev := range events["data"].([]any) {
		actions = append(actions, ev.(map[string]any)["action"].(string))
	}
	assert.Equal(t, "token.delete,token.reveal,token.reveal,token.list,token.read,token.create,"+
		"api_key.create,keyset.create,tenant.create",
		strings.Join(actions, ","))
}
