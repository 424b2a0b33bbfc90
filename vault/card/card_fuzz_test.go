package card

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// luhnRuns returns every 12–19-digit Luhn-valid window of the digit runs of
// s, once with spaces and dashes kept as breaks and once with them removed:
// whatever in s might be a card number.
func luhnRuns(s string) []string {
	var out []string
	stripped := strings.NewReplacer(" ", "", "-", "").Replace(s)
	for _, run := range append(digitRuns(s), digitRuns(stripped)...) {
		for i := 0; i < len(run); i++ {
			for n := panMinLen; n <= panMaxLen && i+n <= len(run); n++ {
				if w := run[i : i+n]; Luhn(w) {
					out = append(out, w)
				}
			}
		}
	}
	return out
}

// checkFuzzError fails unless err is a *FieldError whose text is
// valid UTF-8, has no digit run longer than four and holds no PAN-like run
// of any input.
func checkFuzzError(t *testing.T, err error, inputs ...string) {
	t.Helper()
	var e *FieldError
	if !errors.As(err, &e) || e.Code == "" || e.Param == "" {
		t.Fatalf("want a *FieldError, got %T %q", err, err)
	}
	text := e.Error()
	if !utf8.ValidString(text) || longestDigitRun(text) > 4 {
		t.Fatalf("error text echoes input: %q", text)
	}
	for _, in := range inputs {
		for _, run := range luhnRuns(in) {
			if strings.Contains(text, run) {
				t.Fatalf("error text holds a PAN-like run of the input")
			}
		}
	}
}

// checkPrintsNoPAN fails if any printed or encoded form of v shows digits.
func checkPrintsNoPAN(t *testing.T, v any, digits string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	out := fmt.Sprintf("%v %+v %#v %s %q %x %d %p", v, v, v, v, v, v, v, v) + string(b)
	if strings.Contains(out, digits) {
		t.Fatalf("a printed form shows the PAN")
	}
}

func FuzzParsePAN(f *testing.F) {
	for _, s := range []string{
		"4242424242424242", "4242 4242 4242 4242", "3782-822463-10005", "6205500000000000004",
		"4242424242424241", "42424242420", "42424242424242424242", "", " - ", "4242abcd42424242",
		"４２４２４２４２４２４２４２４２", "9000000000000001", "x4242424242424242x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePAN(s)
		if err != nil {
			checkFuzzError(t, err, s)
			if !p.IsZero() {
				t.Fatal("error with a non-zero PAN")
			}
			return
		}
		digits := strings.NewReplacer(" ", "", "-", "").Replace(s)
		n := p.Len()
		if p.Reveal() != digits || n < panMinLen || n > panMaxLen || !Luhn(digits) {
			t.Fatalf("accepted a bad PAN of length %d", n)
		}
		if m := p.Masked(); m != digits[:6]+strings.Repeat("*", n-10)+digits[n-4:] {
			t.Fatalf("bad mask %q", m)
		}
		if p.Scheme() != DetectScheme(digits) {
			t.Fatal("Scheme disagrees with DetectScheme")
		}
		checkPrintsNoPAN(t, p, digits)
	})
}

func FuzzParseExpiry(f *testing.F) {
	for _, s := range [][2]string{
		{"04", "2033"}, {"4", "33"}, {" 04 ", " 2033 "}, {"0", "2033"}, {"13", "2033"},
		{"04", "1999"}, {"04", "2100"}, {"04", "203"}, {"", ""}, {"-1", "+33"}, {"4242424242424242", "4242424242424242"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, month, year string) {
		e, err := ParseExpiry(month, year)
		if err != nil {
			checkFuzzError(t, err, month, year)
			if e != (Expiry{}) {
				t.Fatal("error with a non-zero Expiry")
			}
			return
		}
		if e.Month < 1 || e.Month > 12 || e.Year < 2000 || e.Year > 2099 {
			t.Fatalf("accepted %d/%d", e.Month, e.Year)
		}
	})
}

func FuzzParseCard(f *testing.F) {
	f.Add("4242424242424242", "04", "2033", "123", "Jane Doe")
	f.Add("3782 822463 10005", "4", "33", "1234", " Zoë Ğüneş 山田 ")
	f.Add("4242424242424241", "13", "1999", "12", "a\nb")
	f.Add("6200000000000005", "12", "2099", "", "")
	f.Add("4242424242424242", "04", "2033", "4242424242424242", "4242424242424242")
	f.Add("4242424242424242", "04", "2033", "123", "Jane\xffDoe")
	f.Fuzz(func(t *testing.T, number, month, year, cvc, name string) {
		c, err := ParseCard(CardInput{Number: number, ExpMonth: month, ExpYear: year, CVC: cvc, Name: name})
		if err != nil {
			checkFuzzError(t, err, number, month, year, cvc, name)
			return
		}
		if !utf8.ValidString(c.Name) || utf8.RuneCountInString(c.Name) > maxCardNameLen {
			t.Fatal("accepted a bad name")
		}
		if n := len(c.CVC.Reveal()); n != 0 && n != 3 && n != 4 {
			t.Fatal("accepted a bad CVC")
		}
		c.Name = "" // the name is free text and may hold any digits
		checkPrintsNoPAN(t, c, c.PAN.Reveal())
	})
}
