package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// leakPath is one error path a card number is pushed through.
type leakPath struct {
	name string
	req  func(pan string) hostileRequest
}

// breakLuhn returns pan with its last digit changed, so it fails the check.
func breakLuhn(pan string) string {
	last := pan[len(pan)-1]
	return pan[:len(pan)-1] + string('0'+(last-'0'+1)%10)
}

// spaced returns pan in groups of four digits split by spaces.
func spaced(pan string) string {
	var parts []string
	for i := 0; i < len(pan); i += 4 {
		parts = append(parts, pan[i:min(i+4, len(pan))])
	}
	return strings.Join(parts, " ")
}

// leakPaths lists the error paths, each answering status and code, with a
// card number where it does not belong.
func leakPaths(k hostileKeys, primaryKeyID uint32) []leakPath {
	const post, get = http.MethodPost, http.MethodGet
	q := func(s string) string { return `"` + s + `"` }
	body := func(metadata, number, month, year, cvc, name string) string {
		return card(metadata, number, month, year, cvc, name)
	}
	tokenizeWith := func(status int, code, param string, b func(pan string) string) func(string) hostileRequest {
		return func(pan string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: k.all, body: b(pan), status: status, code: code, param: param}
		}
	}
	detokenizeWith := func(status int, code string, b func(pan string) string) func(string) hostileRequest {
		return func(pan string) hostileRequest {
			return hostileRequest{method: post, path: "/tokens/" + k.mine + "/detokenize", key: k.all, body: b(pan), status: status, code: code}
		}
	}
	return []leakPath{
		// Validation of every card field and attribute.
		{"Luhn-broken number", tokenizeWith(422, "incorrect_number", "card.number", func(p string) string {
			return body(`{}`, q(breakLuhn(p)), `"04"`, `"2033"`, `""`, `""`)
		})},
		{"Luhn-broken JSON number", tokenizeWith(422, "incorrect_number", "card.number", func(p string) string {
			return body(`{}`, breakLuhn(p), `4`, `2033`, `null`, `null`)
		})},
		{"number with a letter", tokenizeWith(422, "invalid_number", "card.number", func(p string) string {
			return body(`{}`, q(p+"x"), `"04"`, `"2033"`, `""`, `""`)
		})},
		{"number too long", tokenizeWith(422, "invalid_number", "card.number", func(p string) string {
			return body(`{}`, q(p+"000000000"), `"04"`, `"2033"`, `""`, `""`)
		})},
		{"PAN as month", tokenizeWith(422, "invalid_expiry_month", "card.exp_month", func(p string) string {
			return body(`{}`, q(p), q(p), `"2033"`, `""`, `""`)
		})},
		{"PAN as year", tokenizeWith(422, "invalid_expiry_year", "card.exp_year", func(p string) string {
			return body(`{}`, q(p), `"04"`, p, `""`, `""`)
		})},
		{"PAN as CVC", tokenizeWith(422, "invalid_cvc", "card.cvc", func(p string) string {
			return body(`{}`, q(p), `"04"`, `"2033"`, q(p), `""`)
		})},
		{"PAN as name", tokenizeWith(422, "invalid_name", "card.name", func(p string) string {
			return body(`{}`, q(p), `"04"`, `"2033"`, `"123"`, q(p))
		})},
		{"spaced PAN in name", tokenizeWith(422, "invalid_name", "card.name", func(p string) string {
			return body(`{}`, q(p), `"04"`, `"2033"`, `"123"`, q("Jane "+spaced(p)))
		})},
		{"PAN as business_key", tokenizeWith(422, "sensitive_data", "metadata.business_key", func(p string) string {
			return goodCard(`{"business_key":` + q(p) + `}`)
		})},
		{"PAN inside business_key", tokenizeWith(422, "sensitive_data", "metadata.business_key", func(p string) string {
			return goodCard(`{"business_key":` + q("pm_"+p) + `}`)
		})},
		{"PAN in a metadata value", tokenizeWith(422, "sensitive_data", "metadata.note", func(p string) string {
			return goodCard(`{"note":` + q("card "+spaced(p)+" ok") + `}`)
		})},
		{"PAN as a metadata key", tokenizeWith(422, "sensitive_data", "metadata", func(p string) string {
			return goodCard(`{` + q(p) + `:"v"}`)
		})},
		{"PAN in a too-long metadata key", tokenizeWith(422, "invalid_metadata", "metadata", func(p string) string {
			return goodCard(`{` + q(p+strings.Repeat("k", 30)) + `:"v"}`)
		})},
		{"PAN as reason", detokenizeWith(422, "sensitive_data", func(p string) string { return `{"reason":` + q(p) + `}` })},
		{"spaced PAN in reason", detokenizeWith(422, "sensitive_data", func(p string) string {
			return `{"reason":` + q("customer read "+spaced(p)) + `}`
		})},
		{"PAN in a webhook URL", func(p string) hostileRequest {
			return hostileRequest{method: http.MethodPut, path: "/webhook", key: k.all, body: `{"url":` + q("https://hooks.example/"+p) + `}`, status: 422, code: "sensitive_data"}
		}},
		{"PAN as import provider and key", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/tokens/imports", key: k.all, body: `{"provider":` + q(p) + `,"stripe":{"api_key":` + q(p) + `}}`, status: 422, code: "invalid_provider"}
		}},
		// Wrong scope and bad credentials.
		{"read key tokenizes", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: k.read, body: goodCard(`{}`), status: 403, code: "missing_scope"}
		}},
		{"read key detokenizes", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/tokens/" + k.mine + "/detokenize", key: k.read, body: `{"reason":` + q(p) + `}`, status: 403, code: "missing_scope"}
		}},
		{"PAN as API key", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: p, body: goodCard(`{}`), status: 401, code: "invalid_api_key"}
		}},
		{"PAN as API key prefix", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/tokens", key: "cvk_" + p + "_" + strings.Repeat("A", 43), status: 401, code: "invalid_api_key"}
		}},
		{"PAN as Idempotency-Key of a refused request", func(p string) hostileRequest { // the refusal is kept under the key's hash
			return hostileRequest{method: post, path: "/cde-import", key: k.all, header: map[string]string{"Idempotency-Key": p},
				body: body(`{}`, q(p), `"13"`, `"2033"`, `""`, `""`), status: 422, code: "invalid_expiry_month"}
		}},
		// Unknown tokens and bad query parameters.
		{"PAN as token id", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/tokens/" + p, key: k.all, status: 404, code: "resource_missing"}
		}},
		{"PAN as token id to detokenize", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/tokens/" + p + "/detokenize", key: k.all, body: `{"reason":` + q(p) + `}`, status: 404, code: "resource_missing"}
		}},
		{"PAN as import id", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/tokens/imports/" + p, key: k.all, status: 404, code: "resource_missing"}
		}},
		{"PAN as starting_after", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/tokens?starting_after=" + p, key: k.all, status: 400, code: "parameter_invalid"}
		}},
		{"PAN as limit", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/tokens?limit=" + p + "&business_key=" + p, key: k.all, status: 400, code: "parameter_invalid"}
		}},
		{"PAN as audit limit", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/audit-events?limit=" + url.QueryEscape(spaced(p)), key: k.all, status: 400, code: "parameter_invalid"}
		}},
		{"PAN as an unknown query parameter's value", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/keys/retire?note=" + url.QueryEscape(p), key: k.all, body: `{"key_id":1}`, status: 400, code: "parameter_unknown"}
		}},
		{"PAN as an unknown query parameter's name", func(p string) hostileRequest {
			return hostileRequest{method: get, path: "/tokens?" + url.QueryEscape(p) + "=1", key: k.all, status: 400, code: "parameter_unknown"}
		}},
		// A conflict, with the PAN in a header.
		{"retiring the primary key", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/keys/retire", key: k.all, header: map[string]string{"X-Card": p},
				body: `{"key_id":` + strconv.FormatUint(uint64(primaryKeyID), 10) + `}`, status: 409, code: "key_is_primary"}
		}},
		// Decode errors.
		{"PAN as unknown field", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: k.all, body: `{` + q(p) + `:1}`, status: 400, code: "parameter_unknown"}
		}},
		{"PAN as unknown card field", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: k.all, body: `{"card":{` + q("x"+spaced(p)) + `:1}}`, status: 400, code: "parameter_unknown"}
		}},
		{"PAN as unknown field of a key body", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/keys/retire", key: k.all, body: `{"key_id":1,` + q(p) + `:true}`, status: 400, code: "parameter_unknown"}
		}},
		{"PAN inside an object as number", tokenizeWith(400, "parameter_invalid_type", "", func(p string) string {
			return body(`{}`, `{"n":`+q(p)+`}`, `"04"`, `"2033"`, `""`, `""`)
		})},
		{"PAN as a metadata number", tokenizeWith(400, "parameter_invalid_type", "metadata", func(p string) string {
			return goodCard(`{"n":` + p + `}`)
		})},
		{"PAN-named metadata object", tokenizeWith(400, "parameter_invalid_type", "metadata", func(p string) string {
			return goodCard(`{` + q(p) + `:{}}`)
		})},
		{"PAN as key_id", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/keys/retire", key: k.all, body: `{"key_id":` + p + `}`, status: 400, code: "parameter_invalid_type"}
		}},
		{"PAN as destroy flag", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/keys/retire", key: k.all, body: `{"key_id":1,"destroy":` + q(p) + `}`, status: 400, code: "parameter_invalid_type"}
		}},
		{"PAN as the body", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: k.all, body: p, status: 400, code: "parameter_invalid_type"}
		}},
		{"truncated after the PAN", tokenizeWith(400, "invalid_json", "", func(p string) string {
			return `{"card":{"number":` + q(p)
		})},
		{"syntax error at the PAN", tokenizeWith(400, "invalid_json", "", func(p string) string {
			return `{"card":{"number":` + p + `x}}`
		})},
		{"duplicate PAN", tokenizeWith(400, "parameter_duplicate", "card.number", func(p string) string {
			return `{"card":{"number":` + q(p) + `,"number":` + q(p) + `}}`
		})},
		{"PAN-named duplicate", tokenizeWith(400, "parameter_duplicate", "", func(p string) string {
			return goodCard(`{` + q(p) + `:"a",` + q(p) + `:"b"}`)
		})},
		{"invalid UTF-8 after the PAN", tokenizeWith(400, "invalid_utf8", "", func(p string) string {
			return body(`{}`, q(p), `"04"`, `"2033"`, `""`, "\"\xff\"")
		})},
		{"PAN too deep", tokenizeWith(400, "nesting_too_deep", "", func(p string) string {
			return goodCard(`{` + q(p) + `:` + nested(100, q(p)) + `}`)
		})},
		{"PAN array too long", tokenizeWith(400, "array_too_long", "", func(p string) string {
			return goodCard(`{` + q(p) + `:[` + strings.TrimSuffix(strings.Repeat(p+",", 1001), ",") + `]}`)
		})},
		{"PAN in a body too large", tokenizeWith(413, "body_too_large", "", func(p string) string {
			return goodCard(`{"pad":` + q(strings.Repeat(p, 6000)) + `}`)
		})},
		{"PAN in a body not JSON", func(p string) hostileRequest {
			return hostileRequest{method: post, path: "/cde-import", key: k.all, body: "number=" + p, ctype: "text/plain", status: 415, code: "unsupported_media_type"}
		}},
	}
}

func TestNoPANInErrorsLogsOrAudit(t *testing.T) {
	ts := newTestServer(t)
	k := newHostileKeys(t, ts)
	rotated := ts.do(t, http.MethodPost, "/keys/rotate", k.all, "")
	require.Equal(t, http.StatusOK, rotated.status, "body: %s", rotated.body)
	var primary struct {
		KeyID uint32 `json:"key_id"`
	}
	require.NoError(t, json.Unmarshal(rotated.body, &primary))

	var pans []string
	for _, c := range vaulttest.Cards(t) {
		pans = append(pans, c.Number, spaced(c.Number), breakLuhn(c.Number))
	}
	tokens := tokenCount(t, ts)
	paths := leakPaths(k, primary.KeyID)
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			for _, c := range vaulttest.Cards(t) {
				r := p.req(c.Number)
				requireErrorAnswer(t, ts.send(t, r), r.status, r.typ, r.code, r.param, pans...)
			}
		})
	}

	require.Equal(t, tokens, tokenCount(t, ts), "no error path stored a token")
	t.Run("log", func(t *testing.T) {
		log := ts.log.String()
		require.NotEmpty(t, log)
		requireNoneOf(t, log, pans)
	})
	t.Run("audit rows", func(t *testing.T) {
		rows := auditRows(t)
		require.Greater(t, len(rows), len(paths), "failed and denied requests are audited")
		for _, row := range rows {
			requireNoneOf(t, row, pans)
		}
	})
	t.Run("database", func(t *testing.T) {
		dump := dumpAll(t)
		for _, c := range vaulttest.Cards(t) {
			for _, f := range forbidden(c.Number, false) {
				require.NotContains(t, dump, f, "a card number is stored in plaintext")
			}
		}
	})
}

// requireNoneOf fails if s holds any of pans, naming only its position.
func requireNoneOf(t *testing.T, s string, pans []string) {
	t.Helper()
	for i, p := range pans {
		if strings.Contains(s, p) {
			t.Fatalf("card number #%d of the list appears", i)
		}
	}
}

// auditRows returns every audit row of the package database as JSON text.
func auditRows(t *testing.T) []string {
	t.Helper()
	rows, err := vaulttest.Pool(t, dbURL).Query(context.Background(), `SELECT to_jsonb(a)::text FROM audit_events a ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}
