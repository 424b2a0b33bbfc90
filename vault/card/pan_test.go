package card

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cardFixtures is testdata/cards.json: public test PANs of every scheme and
// numbers that must be rejected.
type cardFixtures struct {
	Cards []struct {
		Number      string `json:"number"`
		Scheme      Scheme `json:"scheme"`
		Description string `json:"description"`
	} `json:"cards"`
	LuhnInvalid []string `json:"luhn_invalid"`
	BadLength   []string `json:"bad_length"`
}

func loadCardFixtures(t testing.TB) cardFixtures {
	t.Helper()
	raw, err := os.ReadFile("../../testdata/cards.json")
	require.NoError(t, err)
	var fx cardFixtures
	require.NoError(t, json.Unmarshal(raw, &fx))
	require.NotEmpty(t, fx.Cards)
	return fx
}

// requireCardError asserts that err is a *FieldError with code and
// param, and that its text echoes no digits of input.
func requireCardError(t *testing.T, err error, code, param, input string) *FieldError {
	t.Helper()
	var e *FieldError
	require.True(t, errors.As(err, &e), "want *FieldError, got %T", err)
	assert.Equal(t, code, e.Code)
	assert.Equal(t, param, e.Param)
	assertEchoesNoDigits(t, e.Error(), input)
	return e
}

// assertEchoesNoDigits asserts that text has no digit run longer than four
// (the longest in any fixed message) and contains no digit run of four or
// more from input, with or without its separators.
func assertEchoesNoDigits(t *testing.T, text, input string) {
	t.Helper()
	assert.LessOrEqual(t, longestDigitRun(text), 4, "message has a long digit run")
	stripped := strings.NewReplacer(" ", "", "-", "").Replace(input)
	for _, run := range append(digitRuns(input), digitRuns(stripped)...) {
		if len(run) >= 4 {
			assert.NotContains(t, text, run, "message echoes input digits")
		}
	}
}

// digitRuns returns the maximal runs of ASCII digits in s.
func digitRuns(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
}

// longestDigitRun returns the length of the longest run of ASCII digits in s.
func longestDigitRun(s string) int {
	longest := 0
	for _, run := range digitRuns(s) {
		longest = max(longest, len(run))
	}
	return longest
}

// withLuhnDigit returns body followed by its Luhn check digit.
func withLuhnDigit(body string) string {
	for d := '0'; d <= '9'; d++ {
		if s := body + string(d); Luhn(s) {
			return s
		}
	}
	panic("unreachable")
}

func TestParsePANTestCards(t *testing.T) {
	for _, c := range loadCardFixtures(t).Cards {
		t.Run(c.Description, func(t *testing.T) {
			require.True(t, Luhn(c.Number), "fixture fails Luhn")
			p, err := ParsePAN(c.Number)
			require.NoError(t, err)
			n := len(c.Number)
			assert.Equal(t, c.Number, p.Reveal())
			assert.Equal(t, c.Scheme, p.Scheme())
			assert.Equal(t, c.Scheme, DetectScheme(c.Number))
			assert.Equal(t, n, p.Len())
			assert.Equal(t, c.Number[:6], p.IIN())
			assert.Equal(t, c.Number[n-4:], p.LastFour())
			assert.False(t, p.IsZero())
			assert.Equal(t, c.Number[:6]+strings.Repeat("*", n-10)+c.Number[n-4:], p.Masked())
		})
	}
}

func TestParsePANSeparators(t *testing.T) {
	want, err := ParsePAN("4242424242424242")
	require.NoError(t, err)
	for _, in := range []string{
		"4242 4242 4242 4242",
		"4242-4242-4242-4242",
		" 4242424242424242 ",
		"4242 - 4242 - 4242 - 4242",
		"42424242--42424242",
	} {
		got, err := ParsePAN(in)
		require.NoError(t, err, "input %d", len(in))
		assert.True(t, got == want, "separated input parses to the same PAN")
	}
	amex, err := ParsePAN("3782 822463 10005")
	require.NoError(t, err)
	assert.Equal(t, "378282*****0005", amex.Masked())
}

func TestParsePANRejects(t *testing.T) {
	const (
		required = "card number is required"
		length   = "card number must be 12 to 19 digits"
		chars    = "card number must contain only digits, spaces and dashes"
		luhnMsg  = "card number failed the Luhn check"
	)
	tests := []struct {
		name, in, code, msg string
	}{
		{"empty", "", "invalid_number", required},
		{"spaces only", "   ", "invalid_number", required},
		{"dashes only", "---", "invalid_number", required},
		{"11 digits", "42424242420", "invalid_number", length},
		{"20 digits", "42424242424242424242", "invalid_number", length},
		{"25 digits", "4242424242424242424242424", "invalid_number", length},
		{"20 digits grouped", "4242 4242 4242 4242 4242", "invalid_number", length},
		{"letters", "4242abcd42424242", "invalid_number", chars},
		{"all letters", "four two four two", "invalid_number", chars},
		{"tab", "4242\t4242424242424242", "invalid_number", chars},
		{"dot", "4242.4242.4242.4242", "invalid_number", chars},
		{"fullwidth digits", "４２４２４２４２４２４２４２４２", "invalid_number", chars},
		{"plus sign", "+4242424242424242", "invalid_number", chars},
		{"luhn", "4242424242424241", "incorrect_number", luhnMsg},
		{"luhn grouped", "4242 4242 4242 4241", "incorrect_number", luhnMsg},
	}
	fx := loadCardFixtures(t)
	for _, s := range fx.LuhnInvalid {
		tests = append(tests, struct{ name, in, code, msg string }{"fixture luhn", s, "incorrect_number", luhnMsg})
	}
	for _, s := range fx.BadLength {
		tests = append(tests, struct{ name, in, code, msg string }{"fixture length", s, "invalid_number", length})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePAN(tt.in)
			assert.True(t, p.IsZero())
			e := requireCardError(t, err, tt.code, "card.number", tt.in)
			assert.Equal(t, tt.msg, e.Message)
		})
	}
}

func TestLuhn(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{"0", true},
		{"18", true},
		{"79927398713", true},
		{"79927398710", false},
		{"4242424242424242", true},
		{"4242424242424241", false},
		{"4242 4242 4242 4242", false},
		{"42424242424242x2", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Luhn(tt.in), "Luhn of a %d-char input", len(tt.in))
	}
}

func TestPANMaskedKeepsLength(t *testing.T) {
	for n := panMinLen; n <= panMaxLen; n++ {
		digits := withLuhnDigit("5" + "12345678901234567"[:n-2])
		p, err := ParsePAN(digits)
		require.NoError(t, err, "length %d", n)
		m := p.Masked()
		assert.Len(t, m, n)
		assert.Equal(t, digits[:6]+strings.Repeat("*", n-10)+digits[n-4:], m)
		assert.NotContains(t, m, digits[6:n-4], "length %d shows a middle digit", n)
	}
	twelve, err := ParsePAN(withLuhnDigit("50000012345"))
	require.NoError(t, err)
	assert.Equal(t, "500000**345"+twelve.Reveal()[11:], twelve.Masked())
}

func TestPANZero(t *testing.T) {
	var p PAN
	assert.True(t, p.IsZero())
	assert.Equal(t, "", p.Reveal())
	assert.Equal(t, "", p.Masked())
	assert.Equal(t, "", p.String())
	assert.Equal(t, "", p.IIN())
	assert.Equal(t, "", p.LastFour())
	assert.Equal(t, 0, p.Len())
	assert.Equal(t, SchemeUnknown, p.Scheme())
	b, err := json.Marshal(p)
	require.NoError(t, err)
	assert.Equal(t, `""`, string(b))
}

func TestPANEquality(t *testing.T) {
	a, err := ParsePAN("4242424242424242")
	require.NoError(t, err)
	b, err := ParsePAN("4242-4242-4242-4242")
	require.NoError(t, err)
	c, err := ParsePAN("4000056655665556")
	require.NoError(t, err)
	assert.True(t, a == b)
	assert.False(t, a == c)
}

func BenchmarkParsePAN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePAN("4242 4242 4242 4242"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMasked(b *testing.B) {
	p, err := ParsePAN("4242424242424242")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Masked()
	}
}
