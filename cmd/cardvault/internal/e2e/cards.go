package e2e

import "fmt"

// testBINs are public test-card prefixes and lengths (Visa, Mastercard,
// Discover, American Express) the harness numbers its cards under.
var testBINs = []struct {
	prefix string
	length int
}{{"424242", 16}, {"555555", 16}, {"601111", 16}, {"378282", 15}}

// CardNumber returns the i-th distinct Luhn-valid test card number.
func CardNumber(i int) string {
	bin := testBINs[i%len(testBINs)]
	return luhnNumber(bin.prefix, bin.length, i/len(testBINs))
}

// luhnNumber returns the i-th Luhn-valid number of length digits starting
// with prefix (vaulttest.LuhnNumber, which tests may use and the binary may
// not).
func luhnNumber(prefix string, length, i int) string {
	body := fmt.Sprintf("%s%0*d", prefix, length-len(prefix)-1, i)
	sum := 0
	for j := len(body) - 1; j >= 0; j-- {
		d := int(body[j] - '0')
		if (len(body)-1-j)%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + string(rune('0'+(10-sum%10)%10))
}

// ForwardBody returns the body Stripe's forward API sends to /cde-import
// (testdata/stripe/forward_body_template.json) with its replacements filled;
// POST /tokens takes the same.
func ForwardBody(businessKey, number string) []byte {
	return fmt.Appendf(nil, `{"metadata":{"business_key":%q},"card":{"number":%q,"exp_month":"04","exp_year":"2033","cvc":"123","name":"John Doe"}}`,
		businessKey, number)
}
