package card

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCVC(t *testing.T) {
	ok := []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{"123", "123"},
		{"0000", "0000"},
		{" 987 ", "987"},
	}
	for _, tt := range ok {
		c, err := ParseCVC(tt.in)
		require.NoError(t, err, "%q", tt.in)
		assert.Equal(t, tt.want, c.Reveal())
		assert.Equal(t, tt.want == "", c.IsZero())
	}
	for _, in := range []string{"1", "12", "12345", "12a", "abc", "-12", "1 23", "１２３", "12\x00"} {
		c, err := ParseCVC(in)
		assert.True(t, c.IsZero())
		e := requireCardError(t, err, "invalid_cvc", "card.cvc", in)
		assert.Equal(t, "card verification code must be 3 or 4 digits", e.Message)
		assert.NotContains(t, e.Error(), in)
	}
}

func TestCVCString(t *testing.T) {
	c3, err := ParseCVC("123")
	require.NoError(t, err)
	c4, err := ParseCVC("1234")
	require.NoError(t, err)
	assert.Equal(t, "***", c3.String())
	assert.Equal(t, "***", c4.String(), "the mask does not tell the length")
	assert.Equal(t, "", CVC{}.String())
	b, err := json.Marshal(CVC{})
	require.NoError(t, err)
	assert.Equal(t, `""`, string(b))
}

func TestParseCardName(t *testing.T) {
	ok := []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{"Jane Doe", "Jane Doe"},
		{"  Jane Doe \n", "Jane Doe"},
		{"Zoë Ğüneş 山田", "Zoë Ğüneş 山田"},
		{"Zoe\u0308", "Zoe\u0308"}, // combining diaeresis
		{"Ἀλέξανδρος", "Ἀλέξανδρος"},
		{"محمد", "محمد"},
		{"👩\u200d💻 Dev", "👩\u200d💻 Dev"}, // zero-width joiner is a format character, allowed
		{"O'Brien-Smith, Jr.", "O'Brien-Smith, Jr."},
		{strings.Repeat("a", 255), strings.Repeat("a", 255)},
		{strings.Repeat("é", 255), strings.Repeat("é", 255)},
		{strings.Repeat("山", 255), strings.Repeat("山", 255)},
	}
	for _, tt := range ok {
		got, err := parseCardName(tt.in)
		require.NoError(t, err, "%q", tt.in)
		assert.Equal(t, tt.want, got)
	}
	const (
		tooLong = "cardholder name must be at most 255 characters"
		control = "cardholder name must not contain control characters"
		utf     = "cardholder name must be valid UTF-8"
	)
	bad := []struct{ name, in, msg string }{
		{"256 ascii", strings.Repeat("a", 256), tooLong},
		{"256 runes", strings.Repeat("é", 256), tooLong},
		{"256 cjk", strings.Repeat("山", 256), tooLong},
		{"newline", "Jane\nDoe", control},
		{"tab", "Jane\tDoe", control},
		{"nul", "Jane\x00Doe", control},
		{"escape", "Jane\x1b[31mDoe", control},
		{"del", "Jane\x7fDoe", control},
		{"c1", "Jane\u0085Doe", control},
		{"line separator", "Jane\u2028Doe", control},
		{"paragraph separator", "Jane\u2029Doe", control},
		{"invalid utf8", "Jane\xffDoe", utf},
		{"truncated utf8", "Zo\xc3", utf},
		{"surrogate", "Jane\xed\xa0\x80Doe", utf},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseCardName(tt.in)
			e := requireCardError(t, err, "invalid_name", "card.name", tt.in)
			assert.Equal(t, tt.msg, e.Message)
		})
	}
}

func TestParseCard(t *testing.T) {
	in := CardInput{Number: "4242 4242 4242 4242", ExpMonth: "4", ExpYear: "33", CVC: "123", Name: " Zoë Ğüneş 山田 "}
	c, err := ParseCard(in)
	require.NoError(t, err)
	assert.Equal(t, "4242424242424242", c.PAN.Reveal())
	assert.Equal(t, Expiry{4, 2033}, c.Expiry)
	assert.Equal(t, "123", c.CVC.Reveal())
	assert.Equal(t, "Zoë Ğüneş 山田", c.Name)

	minimal, err := ParseCard(CardInput{Number: "378282246310005", ExpMonth: "12", ExpYear: "2030"})
	require.NoError(t, err)
	assert.True(t, minimal.CVC.IsZero())
	assert.Equal(t, "", minimal.Name)
}

func TestParseCardFieldOrder(t *testing.T) {
	good := CardInput{Number: "4242424242424242", ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "Jane Doe"}
	allBad := CardInput{Number: "4242424242424241", ExpMonth: "13", ExpYear: "1999", CVC: "12", Name: "a\nb"}
	tests := []struct {
		code, param string
		fix         func(*CardInput) // makes the fields before param good
	}{
		{"incorrect_number", "card.number", func(*CardInput) {}},
		{"invalid_expiry_month", "card.exp_month", func(in *CardInput) { in.Number = good.Number }},
		{"invalid_expiry_year", "card.exp_year", func(in *CardInput) { in.ExpMonth = good.ExpMonth }},
		{"invalid_cvc", "card.cvc", func(in *CardInput) { in.ExpYear = good.ExpYear }},
		{"invalid_name", "card.name", func(in *CardInput) { in.CVC = good.CVC }},
	}
	in := allBad
	for _, tt := range tests {
		tt.fix(&in)
		c, err := ParseCard(in)
		assert.True(t, c.PAN.IsZero(), tt.param)
		requireCardError(t, err, tt.code, tt.param, in.Number+" "+in.CVC)
	}
	in.Name = good.Name
	_, err := ParseCard(in)
	require.NoError(t, err)
}

func TestCardString(t *testing.T) {
	c, err := ParseCard(CardInput{Number: "4242424242424242", ExpMonth: "4", ExpYear: "2033", CVC: "123", Name: "Jane"})
	require.NoError(t, err)
	assert.Equal(t, "Card{VISA 424242******4242 04/2033}", c.String())
	assert.Equal(t, "Card{}", Card{}.String())
	assert.Equal(t, "Card{04/2033}", Card{Expiry: Expiry{4, 2033}}.String())
}

// secretCard is a card whose PAN's hidden digits (665566) and CVC (739)
// appear nowhere in its masked form, expiry or name.
func secretCard(t *testing.T) Card {
	t.Helper()
	c, err := ParseCard(CardInput{Number: "4000056655665556", ExpMonth: "04", ExpYear: "2033", CVC: "739", Name: "Jane Doe"})
	require.NoError(t, err)
	return c
}

// assertNoCardSecrets asserts that out shows neither the PAN, nor its
// hidden middle digits, nor the CVC.
func assertNoCardSecrets(t *testing.T, out string, c Card) {
	t.Helper()
	pan := c.PAN.Reveal()
	assert.NotContains(t, out, pan)
	assert.NotContains(t, out, pan[6:len(pan)-4])
	assert.NotContains(t, out, c.CVC.Reveal())
}

// assertNoLongDigitRun asserts that out has no digit run longer than the
// six digits of an IIN.
func assertNoLongDigitRun(t *testing.T, out string) {
	t.Helper()
	assert.LessOrEqual(t, longestDigitRun(out), 6, "output has a long digit run: %q", out)
}

// valueError is an error held by value, so a wrapping error printed with
// %d or %x shows its text rather than an address, whose digits could
// happen to spell the CVC.
type valueError string

func (e valueError) Error() string { return string(e) }

func TestCardFormattingHidesSecrets(t *testing.T) {
	c := secretCard(t)
	type private struct {
		card Card
		pan  PAN
		cvc  CVC
	}
	values := map[string]any{
		"pan":           c.PAN,
		"*pan":          &c.PAN,
		"cvc":           c.CVC,
		"*cvc":          &c.CVC,
		"card":          c,
		"*card":         &c,
		"slice":         []PAN{c.PAN},
		"map":           map[string]CVC{"cvc": c.CVC},
		"exported":      struct{ Card Card }{c},
		"unexported":    private{c, c.PAN, c.CVC},
		"*unexported":   &private{c, c.PAN, c.CVC},
		"wrapped error": fmt.Errorf("tokenize %v: %w", c, valueError("boom")),
	}
	// Hex verbs may hex-encode other text (a name, an error message), and
	// %p of a pointer prints an address: both make digit runs of their own.
	verbs := []struct {
		format  string
		hexLike bool
	}{
		{"%v", false}, {"%+v", false}, {"%#v", false}, {"%s", false}, {"%q", false},
		{"%d", false}, {"%10.3v", false}, {"%-30s", false}, {"%T", false}, {"%!", false},
		{"%[2]v", false}, {"no verb", false}, {"%x", true}, {"%X", true}, {"%p", true},
	}
	for name, v := range values {
		isPointer := strings.HasPrefix(name, "*") || name == "slice" || name == "map" || name == "wrapped error"
		for _, verb := range verbs {
			if verb.format == "%p" && isPointer {
				continue // an address, which may hold any digits
			}
			out := fmt.Sprintf(verb.format, v)
			assertNoCardSecrets(t, out, c)
			if !verb.hexLike {
				assertNoLongDigitRun(t, out)
			}
		}
		for _, out := range []string{fmt.Sprint(v), fmt.Sprintln(v)} {
			assertNoCardSecrets(t, out, c)
			assertNoLongDigitRun(t, out)
		}
		if name != "wrapped error" {
			b, err := json.Marshal(v)
			require.NoError(t, err, name)
			assertNoCardSecrets(t, string(b), c)
			assertNoLongDigitRun(t, string(b))
		}
	}
}

func TestCardFormattingExact(t *testing.T) {
	c := secretCard(t)
	const masked = "400005******5556"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d"} {
		assert.Equal(t, masked, fmt.Sprintf(verb, c.PAN), verb)
		assert.Equal(t, "***", fmt.Sprintf(verb, c.CVC), verb)
		assert.Equal(t, "Card{VISA "+masked+" 04/2033}", fmt.Sprintf(verb, c), verb)
	}
	assert.Equal(t, `"`+masked+`"`, fmt.Sprintf("%q", c.PAN))
	assert.Equal(t, `"***"`, fmt.Sprintf("%q", c.CVC))
	assert.Equal(t, "  "+masked, fmt.Sprintf("%18v", c.PAN))
	assert.Equal(t, masked, c.PAN.GoString())
	assert.Equal(t, "***", c.CVC.GoString())

	b, err := json.Marshal(c)
	require.NoError(t, err)
	assert.JSONEq(t, `{"PAN":"`+masked+`","Expiry":{"Month":4,"Year":2033},"CVC":"***","Name":"Jane Doe"}`, string(b))
}

func TestCardSlogHidesSecrets(t *testing.T) {
	c := secretCard(t)
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	opts := &slog.HandlerOptions{ReplaceAttr: noTime}
	type private struct{ card Card }
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, opts) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, opts) },
	} {
		var buf bytes.Buffer
		log := slog.New(newHandler(&buf))
		log.Info("tokenize", "pan", c.PAN, "cvc", c.CVC, "card", c,
			slog.Any("ptr", &c), slog.Any("struct", struct{ Card Card }{c}), slog.Any("private", private{c}))
		log.With("card", c).WithGroup("g").Error("failed", "pan", c.PAN)
		out := buf.String()
		assertNoCardSecrets(t, out, c)
		assertNoLongDigitRun(t, out)
		assert.Contains(t, out, "400005******5556", name)
	}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, opts)).Info("m", "card", c)
	var rec struct {
		Card map[string]any `json:"card"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	assert.Equal(t, map[string]any{
		"scheme": "VISA", "number": "400005******5556", "exp": "04/2033", "has_cvc": true, "has_name": true,
	}, rec.Card)
}

func BenchmarkParseCard(b *testing.B) {
	in := CardInput{Number: "4242424242424242", ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "Jane Doe"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCard(in); err != nil {
			b.Fatal(err)
		}
	}
}
