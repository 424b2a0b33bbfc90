package card_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/card"
)

// testPANs returns the public test card numbers of testdata/cards.json.
func testPANs(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/cards.json")
	require.NoError(t, err)
	var f struct {
		Cards []struct {
			Number string `json:"number"`
		} `json:"cards"`
	}
	require.NoError(t, json.Unmarshal(b, &f))
	var out []string
	for _, c := range f.Cards {
		out = append(out, c.Number)
	}
	require.NotEmpty(t, out)
	return out
}

// disguise is one way of writing a card number so that a naive scan misses it.
type disguise struct {
	name string
	do   func(pan string, r *rand.Rand) string
}

// between joins pan's digits, putting sep(r) between each pair.
func between(pan string, sep func(r *rand.Rand) string, r *rand.Rand) string {
	var b strings.Builder
	for i, d := range pan {
		if i > 0 {
			b.WriteString(sep(r))
		}
		b.WriteRune(d)
	}
	return b.String()
}

// each maps every digit of pan through f.
func each(pan string, f func(d rune, r *rand.Rand) string, r *rand.Rand) string {
	var b strings.Builder
	for _, d := range pan {
		b.WriteString(f(d, r))
	}
	return b.String()
}

func fixed(s string) func(*rand.Rand) string { return func(*rand.Rand) string { return s } }

// disguises are the ways of stepping around a naive PAN guard.
var disguises = []disguise{
	{"dots", func(p string, r *rand.Rand) string { return between(p, fixed("."), r) }},
	{"slashes in groups", func(p string, _ *rand.Rand) string { return p[:4] + "/" + p[4:8] + "/" + p[8:] }},
	{"double spaces", func(p string, r *rand.Rand) string { return between(p, fixed("  "), r) }},
	{"no-break spaces", func(p string, r *rand.Rand) string { return between(p, fixed("\u00a0"), r) }},
	{"zero-width spaces", func(p string, r *rand.Rand) string { return between(p, fixed("\u200b"), r) }},
	{"soft hyphens and joiners", func(p string, r *rand.Rand) string { return between(p, fixed("\u00ad\u200d"), r) }},
	{"en dashes", func(p string, r *rand.Rand) string { return between(p, fixed("\u2013"), r) }},
	{"full-width digits", func(p string, r *rand.Rand) string {
		return each(p, func(d rune, _ *rand.Rand) string { return string('\uff10' + d - '0') }, r)
	}},
	{"Arabic-Indic digits", func(p string, r *rand.Rand) string {
		return each(p, func(d rune, _ *rand.Rand) string { return string('\u0660' + d - '0') }, r)
	}},
	{"mathematical bold digits", func(p string, r *rand.Rand) string {
		return each(p, func(d rune, _ *rand.Rand) string { return string('\U0001d7ce' + d - '0') }, r)
	}},
	{"percent-encoded", func(p string, r *rand.Rand) string {
		return each(p, func(d rune, _ *rand.Rand) string { return fmt.Sprintf("%%%02X", d) }, r)
	}},
	{"percent-encoded twice", func(p string, r *rand.Rand) string {
		return each(p, func(d rune, _ *rand.Rand) string { return fmt.Sprintf("%%25%02x", d) }, r)
	}},
	{"a leading digit", func(p string, _ *rand.Rand) string { return "7" + p }},
	{"glued after an order number", func(p string, _ *rand.Rand) string { return "order 20261122" + p }},
	{"glued before more digits", func(p string, _ *rand.Rand) string { return p + "0042" }},
}

// mixed applies a random separator or digit form at each digit: the
// generator the fuzzer drives.
func mixed(pan string, r *rand.Rand) string {
	var b strings.Builder
	for i, d := range pan {
		if i > 0 {
			b.WriteString([]string{"", "", " ", "  ", ".", "/", "-", "\u00a0", "\u200b", "\u2013", "_", "\ufeff"}[r.IntN(12)])
		}
		switch r.IntN(5) {
		case 0:
			b.WriteRune('\uff10' + d - '0')
		case 1:
			fmt.Fprintf(&b, "%%%02X", d)
		case 2:
			b.WriteRune('\u0966' + d - '0') // Devanagari
		default:
			b.WriteRune(d)
		}
	}
	prefix := []string{"", "1", "99", "ref ", "x=", "https://hooks.example.com/c/"}[r.IntN(6)]
	return prefix + b.String()
}

func TestContainsPANSeesThroughDisguises(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, pan := range testPANs(t) {
		for _, d := range disguises {
			s := d.do(pan, r)
			assert.True(t, card.ContainsPAN(s), "%s: %q", d.name, s)
		}
	}
}

func TestContainsPANLeavesOrdinaryTextAlone(t *testing.T) {
	for _, s := range []string{
		"", "pm_1DevExample", "John Doe", "order 12345", "2026-11-22T15:16:55Z",
		"3f0c1234-5678-4abc-9def-0123456789ab", "+44 20 7946 0958", "100%", "50% off", "%zz%4",
		"424242******4242", "merchant-initiated charge", "ｆｕｌｌ ｗｉｄｔｈ", "٣ items",
	} {
		assert.False(t, card.ContainsPAN(s), "%q", s)
	}
}

func FuzzContainsPANFindsDisguisedPANs(f *testing.F) {
	for i := range 8 {
		f.Add(uint64(i), uint8(i))
	}
	pans := testPANs(f)
	f.Fuzz(func(t *testing.T, seed uint64, which uint8) {
		r := rand.New(rand.NewPCG(seed, 7))
		pan := pans[int(which)%len(pans)]
		s := mixed(pan, r)
		if !card.ContainsPAN(s) {
			t.Fatalf("a disguised test PAN went unseen: %q", s)
		}
	})
}
