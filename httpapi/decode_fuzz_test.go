package httpapi

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// FuzzDecodeCDEImport drives the /cde-import body through everything a
// request passes before the database: decodeBody (UTF-8, depth, array
// lengths, duplicate and unknown keys, types, validate tags) and
// card.ParseCard. It must never panic, every refusal must be a 400 or 422
// domain error, and no error text may hold a card number of the input. Its
// seed corpus is testdata/fuzz/FuzzDecodeCDEImport (Stripe forward bodies of
// the public test cards) plus the bodies below.
func FuzzDecodeCDEImport(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"business_key":"pm_1"},"card":{"number":"4242424242424242","exp_month":"04","exp_year":"2033","cvc":"123","name":"Jane Doe"}}`,
		`{"card":{"number":4242424242424242,"exp_month":4,"exp_year":33,"cvc":null,"name":null}}`,
		`{"card":{"number":"4242424242424242","number":"4000056655665556"}}`,
		`{"Card":{"NUMBER":"4242424242424242"}}`,
		`{"4242424242424242":1}`,
		`{"card":{"4242 4242 4242 4242":1}}`,
		`{"metadata":{"4242424242424242":{"a":[1,2]}},"card":{}}`,
		`{"metadata":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `},"card":{}}`,
		`{"card":{"number":"4242424242424242","name":"J\u0000D"}}`,
		"{\"card\":{\"number\":\"4242424242424242\",\"name\":\"J\xffD\"}}",
		`{"card":{"number":"4242424242424242","exp_month":"13","exp_year":"1999"}}`,
		`{"card":{"number":"4242424242424242","exp_month":"4","exp_year":"2033","name":"4242424242424242"}}`,
		`{"card":{"number":1e400}}`,
		`{"card":{"number":"4242424242424242"`,
		`[` + strings.Repeat(`0,`, 1000) + `0]`,
		`null`,
		``,
		" \t\r\n",
		`{"card":{"number":"4242424242424242","name":"\ud800"}}`,
		`{"metadata":{"a":1},"card":{"number":"4242424242424242","pan":"4242424242424242"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req tokenizeRequest
		err := decodeBody(body, &req)
		if err == nil {
			if !utf8.Valid(body) {
				t.Fatal("accepted a body that is not UTF-8")
			}
			_, err = card.ParseCard(req.input().Card)
		}
		if err == nil {
			return
		}
		e := vault.AsError(err)
		if e.Kind == vault.KindInternal || (e.Kind != vault.KindBadRequest && e.Kind != vault.KindInvalid) {
			t.Fatalf("refusal is not a 400 or 422 domain error: %T", err)
		}
		if e.Code == "" || e.Message == "" {
			t.Fatal("refusal without a code or message")
		}
		text := e.Error() + "\x00" + e.Param
		if len(e.Param) > 3*maxEchoedName {
			t.Fatalf("param of %d bytes echoes too much", len(e.Param))
		}
		for _, run := range panRuns(string(body)) {
			if strings.Contains(text, run) {
				t.Fatalf("error %q holds a card number of the input", e.Code)
			}
		}
	})
}

var digitRun = regexp.MustCompile(`[0-9]{12,}`)

// panRuns returns every Luhn-valid 12–19-digit window of the digit runs of
// s, taken as they are and with spaces and dashes removed, and with JSON's
// \u escapes of digits decoded: whatever in s may be a card number.
func panRuns(s string) []string {
	var out []string
	unescaped := regexp.MustCompile(`\\u003[0-9]`).ReplaceAllStringFunc(s, func(m string) string { return m[5:] })
	for _, text := range []string{s, unescaped} {
		for _, v := range []string{text, strings.NewReplacer(" ", "", "-", "").Replace(text)} {
			for _, run := range digitRun.FindAllString(v, -1) {
				for i := range run {
					for n := 12; n <= 19 && i+n <= len(run); n++ {
						if card.Luhn(run[i : i+n]) {
							out = append(out, run[i:i+n])
						}
					}
				}
			}
		}
	}
	return out
}

// BenchmarkDecodeCDEImport measures decodeBody on a Stripe forward body:
// whole, its go-json-experiment/json decode alone, and the limit check a
// body with a '[' or many '{' pays when it decodes (the gate, then the
// structural scan). Run:
// go test ./httpapi -run '^$' -bench DecodeCDEImport -benchmem
func BenchmarkDecodeCDEImport(b *testing.B) {
	body := []byte(forwardBody)
	b.Run("decodeBody", func(b *testing.B) {
		for b.Loop() {
			var req tokenizeRequest
			if err := decodeBody(body, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal only", func(b *testing.B) {
		for b.Loop() {
			var req tokenizeRequest
			if err := json.Unmarshal(body, &req, decodeOptions); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mayBreakLimits only", func(b *testing.B) {
		for b.Loop() {
			if mayBreakLimits(body) {
				b.Fatal("the forward body needs no scan")
			}
		}
	})
	b.Run("scanBody only", func(b *testing.B) {
		for b.Loop() {
			if err := scanBody(body, -1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
