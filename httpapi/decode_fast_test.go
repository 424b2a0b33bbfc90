package httpapi

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

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

// requireSameDecode decodes body with decodeBodyFast and with decodeBodyStrict
// into fresh values from newDst and fails unless both give the same error
// (kind, code, message, param) and the same value.
func requireSameDecode(t *testing.T, newDst func() any, body []byte) {
	t.Helper()
	fast, strict := newDst(), newDst()
	fastErr, strictErr := decodeBodyFast(body, fast), decodeBodyStrict(body, strict)
	if !sameError(fastErr, strictErr) {
		t.Fatalf("decodeBodyFast error %v, decodeBodyStrict error %v", errCode(fastErr), errCode(strictErr))
	}
	if fastErr == nil && !reflect.DeepEqual(fast, strict) {
		t.Fatalf("decodeBodyFast and decodeBodyStrict decoded %T differently", fast)
	}
}

// sameError reports whether a and b are the same refusal.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ea, eb *vault.Error
	if errors.As(a, &ea) != errors.As(b, &eb) {
		return false
	}
	if ea == nil {
		return a.Error() == b.Error()
	}
	return ea.Kind == eb.Kind && ea.Code == eb.Code && ea.Message == eb.Message && ea.Param == eb.Param &&
		(ea.Err == nil) == (eb.Err == nil)
}

// errCode names an error by its code only, so a failure never prints a
// message that could hold input.
func errCode(err error) string {
	var e *vault.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return "nil"
	}
	return "non-domain error"
}

func TestFastDecodeTakesWellFormedBodies(t *testing.T) {
	for _, tc := range []struct {
		name, typ, body string
	}{
		{"stripe forward body", "tokenize", forwardBody},
		{"numbers and nulls", "tokenize", `{"card":{"number":4242424242424242,"exp_month":4,"exp_year":2033,"cvc":null,"name":null},"metadata":null}`},
		{"whitespace everywhere", "tokenize", " \t\r\n{ \"card\" : { \"number\" : \"4242424242424242\" } , \"metadata\" : { } }\n"},
		{"escapes in keys and values", "tokenize", `{"c\u0061rd":{"name":"J\u00e9r\u00f4me \"Jo\" \\ \/ \b\f\n\r\t"},"metadata":{"k\u0065y":"v\u20ac","e":""}}`},
		{"metadata value null", "tokenize", `{"card":{},"metadata":{"a":null}}`},
		{"multi-byte UTF-8", "tokenize", `{"card":{"name":"Zoë 李 🙂"}}`},
		{"number forms", "tokenize", `{"card":{"number":-0,"exp_month":1.5e3,"exp_year":2E-2,"cvc":0.25}}`},
		{"card null", "tokenize", `{"card":null}`},
		{"empty object", "detokenize", `{}`},
		{"reason", "detokenize", `{"reason":"fraud review"}`},
		{"nested struct", "createImport", `{"provider":"stripe","stripe":{"api_key":"sk_test_1"}}`},
		{"nested struct null", "createImport", `{"provider":"stripe","stripe":null}`},
		{"uint and bool", "retire", `{"key_id":4294967295,"destroy":true}`},
		{"bool false and null", "retire", `{"key_id":0,"destroy":null}`},
		{"url", "webhook", `{"url":"https://example.com/hook"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newDst := requestTypes()[tc.typ]
			if !fastDecode([]byte(tc.body), newDst()) {
				t.Fatal("fastDecode left a well-formed body to the strict path")
			}
			requireSameDecode(t, newDst, []byte(tc.body))
		})
	}
}

func TestFastDecodeLeavesOtherInputToStrict(t *testing.T) {
	for _, tc := range []struct {
		name, typ, body string
	}{
		{"duplicate card field", "tokenize", `{"card":{"number":"4242424242424242","number":"4000056655665556"}}`},
		{"duplicate top-level key", "tokenize", `{"card":{},"card":{}}`},
		{"duplicate escaped key", "tokenize", `{"card":{},"c\u0061rd":{}}`},
		{"duplicate metadata key", "tokenize", `{"card":{},"metadata":{"a":"1","a":"2"}}`},
		{"case-folded key", "tokenize", `{"Card":{"NUMBER":"4242424242424242"}}`},
		{"unknown key", "tokenize", `{"card":{},"4242424242424242":1}`},
		{"invalid UTF-8 in value", "tokenize", "{\"card\":{\"name\":\"J\xffD\"}}"},
		{"invalid UTF-8 in key", "tokenize", "{\"card\":{},\"metadata\":{\"\xc3\":\"x\"}}"},
		{"encoded surrogate", "tokenize", "{\"card\":{\"name\":\"\xed\xa0\x80\"}}"},
		{"surrogate escape", "tokenize", `{"card":{"name":"\ud83d\ude42"}}`},
		{"lone surrogate escape", "tokenize", `{"card":{"name":"\ud800"}}`},
		{"bad escape", "tokenize", `{"card":{"name":"\x41"}}`},
		{"short unicode escape", "tokenize", `{"card":{"name":"\u00"}}`},
		{"control character", "tokenize", "{\"card\":{\"name\":\"a\tb\"}}"},
		{"deep metadata", "tokenize", `{"metadata":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `},"card":{}}`},
		{"array", "tokenize", `{"card":{"number":[1,2]}}`},
		{"top-level array", "tokenize", `[` + strings.Repeat(`0,`, 1000) + `0]`},
		{"bool for card field", "tokenize", `{"card":{"number":true}}`},
		{"number for metadata value", "tokenize", `{"card":{},"metadata":{"a":1}}`},
		{"string for card", "tokenize", `{"card":"4242424242424242"}`},
		{"leading zero", "tokenize", `{"card":{"number":0123}}`},
		{"bare minus", "tokenize", `{"card":{"number":-}}`},
		{"dot without digits", "tokenize", `{"card":{"number":1.}}`},
		{"exponent without digits", "tokenize", `{"card":{"number":1e+}}`},
		{"trailing comma", "tokenize", `{"card":{},}`},
		{"missing colon", "tokenize", `{"card" {}}`},
		{"truncated", "tokenize", `{"card":{"number":"4242424242424242"`},
		{"trailing value", "tokenize", `{"card":{}} {}`},
		{"byte-order mark", "tokenize", "\xef\xbb\xbf{\"card\":{}}"},
		{"null body", "tokenize", `null`},
		{"empty body", "tokenize", ``},
		{"nul literal", "tokenize", `{"card":nul}`},
		{"negative zero uint", "retire", `{"key_id":-0}`},
		{"negative uint", "retire", `{"key_id":-1}`},
		{"uint overflow", "retire", `{"key_id":4294967296}`},
		{"huge integer", "retire", `{"key_id":99999999999999999999999}`},
		{"fraction for uint", "retire", `{"key_id":1.0}`},
		{"string for bool", "retire", `{"key_id":1,"destroy":"true"}`},
		{"number for string", "webhook", `{"url":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newDst := requestTypes()[tc.typ]
			dst := newDst()
			if fastDecode([]byte(tc.body), dst) {
				t.Fatal("fastDecode took input that is for the strict path")
			}
			if !reflect.ValueOf(dst).Elem().IsZero() {
				t.Fatal("fastDecode left a partly decoded value behind")
			}
			requireSameDecode(t, newDst, []byte(tc.body))
		})
	}
}

func TestFastDecodeNeedsAZeroStructPointer(t *testing.T) {
	body := []byte(`{"reason":"x"}`)
	prefilled := &detokenizeRequest{Reason: "kept"}
	var m map[string]string
	for name, dst := range map[string]any{
		"non-zero value":   prefilled,
		"nil pointer":      (*detokenizeRequest)(nil),
		"not a pointer":    detokenizeRequest{},
		"pointer to a map": &m,
		"unsupported type": &struct{ A []string }{},
	} {
		t.Run(name, func(t *testing.T) {
			if fastDecode(body, dst) {
				t.Fatal("fastDecode decoded into a destination it does not handle")
			}
		})
	}
}

// FuzzDecodeFastMatchesStrict checks that the one-pass decodeBodyFast gives
// exactly what the three-pass decodeBodyStrict gives, error or value, for
// every request type. Its seeds include FuzzDecodeCDEImport's corpus.
func FuzzDecodeFastMatchesStrict(f *testing.F) {
	for _, s := range []string{
		forwardBody,
		`{"card":{"number":4242424242424242,"exp_month":4,"exp_year":33,"cvc":null,"name":null}}`,
		`{"card":{"number":"4242424242424242","number":"4000056655665556"}}`,
		`{"Card":{"NUMBER":"4242424242424242"}}`,
		`{"card":{"name":"J\u00e9 \ud83d\ude42"},"metadata":{"k":null}}`,
		`{"reason":"fraud review"}`,
		`{"provider":"stripe","stripe":{"api_key":"sk_test_1"}}`,
		`{"key_id":7,"destroy":true}`,
		`{"key_id":-0,"destroy":false}`,
		`{"url":"https://example.com/hook"}`,
	} {
		f.Add([]byte(s))
	}
	for _, body := range fuzzCorpus(f, "FuzzDecodeCDEImport") {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, newDst := range requestTypes() {
			requireSameDecode(t, newDst, body)
		}
	})
}

// fuzzCorpus returns the []byte inputs of another fuzzer's seed corpus.
func fuzzCorpus(f *testing.F, name string) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if quoted, ok := strings.CutPrefix(line, "[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
				if err != nil {
					f.Fatalf("%s: %v", file, err)
				}
				out = append(out, []byte(s))
			}
		}
	}
	if len(out) == 0 {
		f.Fatalf("no seeds in testdata/fuzz/%s", name)
	}
	return out
}
