package httpapi

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// forwardBody is Stripe's forward body as /cde-import receives it.
const forwardBody = `{"metadata":{"business_key":"pm_1QbXyZ2eZvKYlo2C","order":"A-1"},"card":{"number":"4242424242424242","exp_month":"04","exp_year":"2033","cvc":"123","name":"Jane Doe"}}`

// requestTypes returns a fresh pointer to each type a handler decodes.
func requestTypes() map[string]func() any {
	return map[string]func() any{
		"tokenize":     func() any { return new(tokenizeRequest) },
		"detokenize":   func() any { return new(detokenizeRequest) },
		"createImport": func() any { return new(createImportRequest) },
		"retire":       func() any { return new(retireRequest) },
		"webhook":      func() any { return new(webhookRequest) },
	}
}

// requireRefusal decodes body into dst and requires the one 400 refusal
// with code, param and message.
func requireRefusal(t *testing.T, body string, dst any, code, param, message string) {
	t.Helper()
	err := decodeBody([]byte(body), dst)
	var e *vault.Error
	require.True(t, errors.As(err, &e), "want a domain error, got %T", err)
	assert.Equal(t, vault.KindBadRequest, e.Kind)
	assert.Equal(t, code, e.Code)
	assert.Equal(t, param, e.Param)
	assert.Equal(t, message, e.Message)
	assert.NoError(t, e.Err, "a refusal wraps nothing that could quote the body")
}

// nested returns v inside depth JSON arrays.
func nested(depth int, v string) string {
	return strings.Repeat("[", depth) + v + strings.Repeat("]", depth)
}

// zeros returns a JSON array of n zeros.
func zeros(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]"
}

func TestDecodeBodyRefusals(t *testing.T) {
	const (
		tooDeep    = "the request body may nest objects and arrays at most 32 deep"
		tooLong    = "arrays in the request body may have at most 1000 elements"
		notUTF8    = "the request body must be valid UTF-8"
		notCard    = "card fields must be strings or numbers"
		notObject  = "the request body must be of type object"
		notNumber  = "key_id must be of type number"
		oneValue   = "the request body must hold a single JSON value"
		truncated  = "the request body is not valid JSON (truncated)"
		cardNeeded = "card is required"
	)
	long := strings.Repeat("a", 100)
	for _, tc := range []struct {
		name, typ, body, code, param, message string
	}{
		// Empty bodies.
		{"empty body", "tokenize", ``, "invalid_json", "", "the body is empty"},
		{"whitespace body", "tokenize", " \t\r\n", "invalid_json", "", "the body is empty"},
		// Duplicate, case-folded and unknown names.
		{"duplicate card field", "tokenize", `{"card":{"number":"4242424242424242","number":"4000056655665556"}}`, "parameter_duplicate", "card.number", "field card.number appears more than once"},
		{"duplicate top-level key", "tokenize", `{"card":{},"card":{}}`, "parameter_duplicate", "card", "field card appears more than once"},
		{"duplicate escaped key", "tokenize", `{"card":{},"c\u0061rd":{}}`, "parameter_duplicate", "card", "field card appears more than once"},
		{"duplicate metadata key", "tokenize", `{"card":{},"metadata":{"a":"1","a":"2"}}`, "parameter_duplicate", "metadata.a", "field metadata.a appears more than once"},
		{"case-folded key", "tokenize", `{"Card":{"NUMBER":"4242424242424242"}}`, "parameter_unknown", "Card", "unknown field Card"},
		{"unknown key named by a PAN", "tokenize", `{"card":{},"4242424242424242":1}`, "parameter_unknown", "424242******4242", "unknown field 424242******4242"},
		{"unknown card key", "tokenize", `{"card":{"pan":"4242424242424242"}}`, "parameter_unknown", "card.pan", "unknown field card.pan"},
		{"long unknown key", "tokenize", `{"` + long + `":1}`, "parameter_unknown", long[:64] + "…", "unknown field " + long[:64] + "…"},
		{"unknown retire key", "retire", `{"key_id":1,"4242424242424242":true}`, "parameter_unknown", "424242******4242", "unknown field 424242******4242"},
		{"unknown nested key", "createImport", `{"provider":"stripe","stripe":{"api_key":"sk_test_1","secret":"x"}}`, "parameter_unknown", "stripe.secret", "unknown field stripe.secret"},
		// UTF-8 and strings.
		{"invalid UTF-8 in a value", "tokenize", "{\"card\":{\"name\":\"J\xffD\"}}", "invalid_utf8", "", notUTF8},
		{"invalid UTF-8 in a key", "tokenize", "{\"card\":{},\"metadata\":{\"\xc3\":\"x\"}}", "invalid_utf8", "", notUTF8},
		{"invalid UTF-8 outside strings", "tokenize", "{\"card\":\xff}", "invalid_utf8", "", notUTF8},
		{"encoded surrogate", "tokenize", "{\"card\":{\"name\":\"\xed\xa0\x80\"}}", "invalid_utf8", "", notUTF8},
		{"escaped lone surrogate", "tokenize", `{"card":{"name":"\ud800"}}`, "invalid_json", "", "the request body is not valid JSON (at byte 17)"},
		{"bad escape", "tokenize", `{"card":{"name":"\x41"}}`, "invalid_json", "", "the request body is not valid JSON (at byte 17)"},
		{"short unicode escape", "tokenize", `{"card":{"name":"\u00"}}`, "invalid_json", "", "the request body is not valid JSON (at byte 17)"},
		{"control character", "tokenize", "{\"card\":{\"name\":\"a\tb\"}}", "invalid_json", "", "the request body is not valid JSON (at byte 18)"},
		// Nesting and array lengths.
		{"deep metadata", "tokenize", `{"metadata":{"a":` + nested(40, "") + `},"card":{}}`, "nesting_too_deep", "metadata.a", tooDeep},
		{"deep objects in metadata", "tokenize", `{"metadata":{"a":` + strings.Repeat(`{"b":`, 40) + "1" + strings.Repeat("}", 40) + `},"card":{}}`, "nesting_too_deep", "metadata.a" + strings.Repeat(".b", 27) + "…", tooDeep},
		{"deep top-level array", "tokenize", nested(40, "1"), "nesting_too_deep", "", tooDeep},
		{"depth at the limit, wrong type", "tokenize", `{"metadata":{"a":` + nested(30, "") + `},"card":{}}`, "parameter_invalid_type", "metadata", "metadata must be of type string"},
		{"long array in a card field", "tokenize", `{"card":{"number":` + zeros(1001) + `}}`, "array_too_long", "card.number", tooLong},
		{"array at the limit in a card field", "tokenize", `{"card":{"number":` + zeros(1000) + `}}`, "parameter_invalid_type", "", notCard},
		{"long top-level array", "tokenize", zeros(1001), "array_too_long", "", tooLong},
		// Wrong types.
		{"top-level array", "tokenize", zeros(1000), "parameter_invalid_type", "", notObject},
		{"top-level string", "tokenize", `"4242424242424242"`, "parameter_invalid_type", "", notObject},
		{"top-level number", "tokenize", `4242424242424242`, "parameter_invalid_type", "", notObject},
		{"array for a card field", "tokenize", `{"card":{"number":[1,2]}}`, "parameter_invalid_type", "", notCard},
		{"bool for a card field", "tokenize", `{"card":{"number":true}}`, "parameter_invalid_type", "", notCard},
		{"object for a card field", "tokenize", `{"card":{"exp_month":{}}}`, "parameter_invalid_type", "", notCard},
		{"number for a metadata value", "tokenize", `{"card":{},"metadata":{"a":1}}`, "parameter_invalid_type", "metadata", "metadata must be of type string"},
		{"array for metadata", "tokenize", `{"card":{},"metadata":["a"]}`, "parameter_invalid_type", "metadata", "metadata must be of type object"},
		{"string for card", "tokenize", `{"card":"4242424242424242"}`, "parameter_invalid_type", "card", "card must be of type object"},
		{"negative zero uint", "retire", `{"key_id":-0}`, "parameter_invalid_type", "key_id", notNumber},
		{"negative uint", "retire", `{"key_id":-1}`, "parameter_invalid_type", "key_id", notNumber},
		{"uint overflow", "retire", `{"key_id":4294967296}`, "parameter_invalid_type", "key_id", notNumber},
		{"huge integer", "retire", `{"key_id":99999999999999999999999}`, "parameter_invalid_type", "key_id", notNumber},
		{"fraction for uint", "retire", `{"key_id":1.0}`, "parameter_invalid_type", "key_id", notNumber},
		{"string for uint", "retire", `{"key_id":"1"}`, "parameter_invalid_type", "key_id", notNumber},
		{"string for bool", "retire", `{"key_id":1,"destroy":"true"}`, "parameter_invalid_type", "destroy", "destroy must be of type bool"},
		{"number for a string", "webhook", `{"url":1}`, "parameter_invalid_type", "url", "url must be of type string"},
		{"number for a nested string", "createImport", `{"provider":"stripe","stripe":{"api_key":1}}`, "parameter_invalid_type", "stripe.api_key", "stripe.api_key must be of type string"},
		// Syntax.
		{"leading zero", "tokenize", `{"card":{"number":0123}}`, "invalid_json", "", "the request body is not valid JSON (at byte 19)"},
		{"bare minus", "tokenize", `{"card":{"number":-}}`, "invalid_json", "", "the request body is not valid JSON (at byte 19)"},
		{"dot without digits", "tokenize", `{"card":{"number":1.}}`, "invalid_json", "", "the request body is not valid JSON (at byte 20)"},
		{"exponent without digits", "tokenize", `{"card":{"number":1e+}}`, "invalid_json", "", "the request body is not valid JSON (at byte 21)"},
		{"trailing comma", "tokenize", `{"card":{},}`, "invalid_json", "", "the request body is not valid JSON (at byte 10)"},
		{"missing colon", "tokenize", `{"card" {}}`, "invalid_json", "", "the request body is not valid JSON (at byte 8)"},
		{"single quotes", "tokenize", `{'card':{}}`, "invalid_json", "", "the request body is not valid JSON (at byte 1)"},
		{"comment", "tokenize", `{/* x */"card":{}}`, "invalid_json", "", "the request body is not valid JSON (at byte 1)"},
		{"bare word", "tokenize", `card`, "invalid_json", "", "the request body is not valid JSON (at byte 0)"},
		{"byte-order mark", "tokenize", "\xef\xbb\xbf{\"card\":{}}", "invalid_json", "", "the request body is not valid JSON (at byte 0)"},
		{"nul literal", "tokenize", `{"card":nul}`, "invalid_json", "", "the request body is not valid JSON (at byte 11)"},
		{"truncated", "tokenize", `{"card":{"number":"4242424242424242"`, "invalid_json", "", truncated},
		{"only an open brace", "tokenize", `{`, "invalid_json", "", truncated},
		{"trailing value", "tokenize", `{"card":{}} {}`, "invalid_json", "", oneValue},
		{"trailing garbage", "tokenize", `{"card":{}} x`, "invalid_json", "", oneValue},
		// Validation.
		{"null body", "tokenize", `null`, "parameter_missing", "card", cardNeeded},
		{"card null", "tokenize", `{"card":null}`, "parameter_missing", "card", cardNeeded},
		{"key_id zero", "retire", `{"key_id":0,"destroy":null}`, "parameter_missing", "key_id", "key_id is required"},
		{"stripe null", "createImport", `{"provider":"stripe","stripe":null}`, "parameter_missing", "stripe.api_key", "stripe.api_key is required"},
		{"501-character reason", "detokenize", `{"reason":"` + strings.Repeat("r", 501) + `"}`, "parameter_invalid", "reason", "reason must have at most 500 entries or characters"},
		// Which refusal wins: the structure anywhere before a wrong type; an
		// unknown name before what follows it; the first wrong type before an
		// unknown name after it (decoding stops there).
		{"syntax error after a wrong type", "tokenize", `{"metadata":{"a":1},"card":{},}`, "invalid_json", "", "the request body is not valid JSON (at byte 29)"},
		{"duplicate after a wrong type", "tokenize", `{"metadata":{"a":1},"card":{},"card":{}}`, "parameter_duplicate", "card", "field card appears more than once"},
		{"too deep after a wrong type", "tokenize", `{"metadata":{"a":1,"b":` + nested(40, "") + `},"card":{}}`, "nesting_too_deep", "metadata.b", tooDeep},
		{"trailing value after a wrong type", "tokenize", `{"card":"x"} {}`, "invalid_json", "", oneValue},
		{"unknown key before a syntax error", "tokenize", `{"card":{"pan":1,}}`, "parameter_unknown", "card.pan", "unknown field card.pan"},
		{"unknown key before too deep a value", "tokenize", `{"a":` + nested(40, "") + `}`, "parameter_unknown", "a", "unknown field a"},
		{"wrong type before an unknown key", "tokenize", `{"metadata":{"a":1},"card":{"pan":1}}`, "parameter_invalid_type", "metadata", "metadata must be of type string"},
		{"unknown key before a wrong type", "tokenize", `{"card":{"pan":1},"metadata":{"a":1}}`, "parameter_unknown", "card.pan", "unknown field card.pan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefusal(t, tc.body, requestTypes()[tc.typ](), tc.code, tc.param, tc.message)
		})
	}
}

func TestDecodeBodyAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       any
	}{
		{"stripe forward body", forwardBody, &tokenizeRequest{
			Metadata: map[string]string{"business_key": "pm_1QbXyZ2eZvKYlo2C", "order": "A-1"},
			Card:     &cardRequest{Number: "4242424242424242", ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "Jane Doe"}}},
		{"numbers and nulls", `{"card":{"number":4242424242424242,"exp_month":4,"exp_year":2033,"cvc":null,"name":null},"metadata":null}`,
			&tokenizeRequest{Card: &cardRequest{Number: "4242424242424242", ExpMonth: "4", ExpYear: "2033"}}},
		{"number forms kept as written", `{"card":{"number":-0,"exp_month":1.5e3,"exp_year":2E-2,"cvc":0.25}}`,
			&tokenizeRequest{Card: &cardRequest{Number: "-0", ExpMonth: "1.5e3", ExpYear: "2E-2", CVC: "0.25"}}},
		{"whitespace everywhere", " \t\r\n{ \"card\" : { \"number\" : \"4242424242424242\" } , \"metadata\" : { } }\n",
			&tokenizeRequest{Metadata: map[string]string{}, Card: &cardRequest{Number: "4242424242424242"}}},
		{"escapes in keys and values", `{"c\u0061rd":{"name":"J\u00e9r\u00f4me \"Jo\" \\ \/ \b\f\n\r\t"},"metadata":{"k\u0065y":"v\u20ac","e":""}}`,
			&tokenizeRequest{Metadata: map[string]string{"key": "v€", "e": ""}, Card: &cardRequest{Name: "Jérôme \"Jo\" \\ / \b\f\n\r\t"}}},
		{"surrogate pair escape", `{"card":{"name":"\ud83d\ude42"}}`, &tokenizeRequest{Card: &cardRequest{Name: "🙂"}}},
		{"multi-byte UTF-8", `{"card":{"name":"Zoë 李 🙂"}}`, &tokenizeRequest{Card: &cardRequest{Name: "Zoë 李 🙂"}}},
		{"metadata value null", `{"card":{},"metadata":{"a":null}}`, &tokenizeRequest{Metadata: map[string]string{"a": ""}, Card: &cardRequest{}}},
		{"empty object", `{}`, &detokenizeRequest{}},
		{"reason", `{"reason":"fraud review"}`, &detokenizeRequest{Reason: "fraud review"}},
		{"nested struct", `{"provider":"stripe","stripe":{"api_key":"sk_test_1"}}`, func() any {
			r := &createImportRequest{Provider: "stripe"}
			r.Stripe.APIKey = "sk_test_1"
			return r
		}()},
		{"uint and bool", `{"key_id":4294967295,"destroy":true}`, &retireRequest{KeyID: 4294967295, Destroy: true}},
		{"bool null", `{"key_id":7,"destroy":null}`, &retireRequest{KeyID: 7}},
		{"url", `{"url":"https://example.com/hook"}`, &webhookRequest{URL: "https://example.com/hook"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := reflectNew(tc.want)
			require.NoError(t, decodeBody([]byte(tc.body), got))
			assert.Equal(t, tc.want, got)
		})
	}
}

// reflectNew returns a pointer to a new zero value of what ptr points to.
func reflectNew(ptr any) any {
	return reflect.New(reflect.TypeOf(ptr).Elem()).Interface()
}

// listRequest has the arrays, free-form values and maps of structs no
// request type has yet, to show the limits and paths hold for them too.
type listRequest struct {
	Tags  []string `json:"tags"`
	Any   any      `json:"any"`
	Items map[string]struct {
		Name string `json:"name"`
	} `json:"items"`
}

func TestDecodeBodyLimitsHoldForDecodableValues(t *testing.T) {
	tags := func(n int) string {
		return `{"tags":[` + strings.TrimSuffix(strings.Repeat(`"t",`, n), ",") + `]}`
	}
	for _, tc := range []struct {
		name, body, code, param, message string
	}{
		{"1001 tags", tags(1001), "array_too_long", "tags", "arrays in the request body may have at most 1000 elements"},
		{"nesting one over the limit", `{"any":` + nested(MaxJSONDepth, "") + `}`, "nesting_too_deep", "any", "the request body may nest objects and arrays at most 32 deep"},
		{"wrong type in an array", `{"tags":["a",1]}`, "parameter_invalid_type", "tags", "tags must be of type string"},
		{"wrong type in a map of structs", `{"items":{"k":{"name":1}}}`, "parameter_invalid_type", "items.name", "items.name must be of type string"},
		{"unknown key in a map of structs", `{"items":{"k":{"size":1}}}`, "parameter_unknown", "items.k.size", "unknown field items.k.size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireRefusal(t, tc.body, new(listRequest), tc.code, tc.param, tc.message)
		})
	}
	t.Run("at the limits", func(t *testing.T) {
		var req listRequest
		require.NoError(t, decodeBody([]byte(tags(MaxJSONArrayLen)), &req))
		assert.Len(t, req.Tags, MaxJSONArrayLen)
		require.NoError(t, decodeBody([]byte(`{"any":`+nested(MaxJSONDepth-1, "")+`}`), &req))
	})
}

func TestDecodeBodyNeedsANonNilPointer(t *testing.T) {
	body := []byte(`{"reason":"x"}`)
	for name, dst := range map[string]any{
		"nil pointer":   (*detokenizeRequest)(nil),
		"not a pointer": detokenizeRequest{},
		"nil":           nil,
	} {
		t.Run(name, func(t *testing.T) {
			err := decodeBody(body, dst)
			require.Error(t, err)
			var e *vault.Error
			assert.False(t, errors.As(err, &e), "a bad destination is a bug, not a client's 400")
		})
	}
}
