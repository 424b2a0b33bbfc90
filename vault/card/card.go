package card

import (
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The request fields of a card's CVC and cardholder name, and the longest
// name accepted, in characters.
const (
	paramCVC       = "card.cvc"
	paramName      = "card.name"
	maxCardNameLen = 255
	cvcMinLen      = 3
	cvcMaxLen      = 4
	cvcRedacted    = "***"
)

// CVC is a card verification code (CVC2/CVV2/CID). Like PAN it cannot print
// itself: String, GoString, Format (every verb), MarshalJSON and LogValue
// give "***" whatever its length, or "" for the zero CVC. Reveal is the only
// way to the digits. The zero value is an absent CVC.
type CVC struct {
	scrambled string // the digits XOR scrambleKey; "" when absent
}

// ParseCVC validates s as a CVC. Surrounding whitespace is ignored, and an
// empty s gives the zero (absent) CVC and no error. On error it returns the
// zero CVC and a *FieldError, code "invalid_cvc", param
// "card.cvc": s is not 3 or 4 ASCII digits. The error never quotes s.
func ParseCVC(s string) (CVC, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return CVC{}, nil
	}
	if _, ok := smallDecimal(s, cvcMaxLen); !ok || len(s) < cvcMinLen {
		return CVC{}, invalid(CodeInvalidCVC, paramCVC, "card verification code must be 3 or 4 digits")
	}
	var buf [cvcMaxLen]byte
	n := copy(buf[:], s)
	scramble(buf[:n])
	return CVC{scrambled: string(buf[:n])}, nil
}

// Reveal returns the digits of the CVC, or "" when absent. It is the only
// way to them: keep its result out of logs, errors and responses.
func (c CVC) Reveal() string {
	var buf [cvcMaxLen]byte
	n := copy(buf[:], c.scrambled)
	scramble(buf[:n])
	return string(buf[:n])
}

// IsZero reports whether the CVC is absent.
func (c CVC) IsZero() bool { return c.scrambled == "" }

// String returns "***", or "" when the CVC is absent.
func (c CVC) String() string {
	if c.IsZero() {
		return ""
	}
	return cvcRedacted
}

// GoString returns String, so %#v shows no digits either.
func (c CVC) GoString() string { return c.String() }

// Format prints String for every verb (quoted for %q).
func (c CVC) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c.String()) }

// MarshalJSON returns String as a JSON string. It never fails.
func (c CVC) MarshalJSON() ([]byte, error) { return jsonString(c.String()), nil }

// LogValue returns String as a slog string value.
func (c CVC) LogValue() slog.Value { return slog.StringValue(c.String()) }

// CardInput is a card as it arrives from a client, untrusted and unparsed
// (Stripe sends every field as a string; numbers are passed as their decimal
// form).
type CardInput struct {
	Number   string
	ExpMonth string
	ExpYear  string
	CVC      string
	Name     string
}

// Card is a validated card. Its String, GoString, Format and LogValue never
// show the PAN's hidden digits, the CVC or the cardholder name; json.Marshal
// gives the masked PAN and "***" for the CVC.
type Card struct {
	PAN    PAN
	Expiry Expiry
	CVC    CVC    // zero when absent
	Name   string // cardholder name; "" when absent
}

// ParseCard validates every field of in and returns the card. On error it
// returns the zero Card and the *FieldError of the first bad
// field in the order number, exp_month, exp_year, cvc, name: see ParsePAN,
// ParseExpiry and ParseCVC; the name gives code "invalid_name", param
// "card.name". No error quotes the input.
func ParseCard(in CardInput) (Card, error) {
	pan, err := ParsePAN(in.Number)
	if err != nil {
		return Card{}, err
	}
	exp, err := ParseExpiry(in.ExpMonth, in.ExpYear)
	if err != nil {
		return Card{}, err
	}
	cvc, err := ParseCVC(in.CVC)
	if err != nil {
		return Card{}, err
	}
	name, err := parseCardName(in.Name)
	if err != nil {
		return Card{}, err
	}
	return Card{PAN: pan, Expiry: exp, CVC: cvc, Name: name}, nil
}

// parseCardName returns the cardholder name s with surrounding whitespace
// removed ("" when absent), or an "invalid_name" *FieldError when s is not valid
// UTF-8, is longer than 255 characters, holds a control character or a
// line or paragraph separator, or holds something that looks like a card
// number (ContainsPAN). Any Unicode letters are accepted.
func parseCardName(s string) (string, error) {
	s = strings.TrimSpace(s)
	n := 0
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return "", invalid(CodeInvalidName, paramName, "cardholder name must be valid UTF-8")
			}
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", invalid(CodeInvalidName, paramName, "cardholder name must not contain control characters")
		}
		if n++; n > maxCardNameLen {
			return "", invalid(CodeInvalidName, paramName, "cardholder name must be at most 255 characters")
		}
	}
	if ContainsPAN(s) { // the masked record shows the name: it must not carry a card number
		return "", invalid(CodeInvalidName, paramName, "cardholder name must not contain a card number")
	}
	return s, nil
}

// String returns a summary that shows only the scheme, the masked PAN and
// the expiry, e.g. "Card{VISA 424242******4242 04/2033}"; "Card{}" for the
// zero Card.
func (c Card) String() string {
	var b strings.Builder
	b.WriteString("Card{")
	if !c.PAN.IsZero() {
		b.WriteString(string(c.PAN.Scheme()))
		b.WriteByte(' ')
		b.WriteString(c.PAN.Masked())
	}
	if !c.Expiry.IsZero() {
		if !c.PAN.IsZero() {
			b.WriteByte(' ')
		}
		b.WriteString(c.Expiry.String())
	}
	b.WriteByte('}')
	return b.String()
}

// GoString returns String, so %#v shows no card data either.
func (c Card) GoString() string { return c.String() }

// Format prints String for every verb (quoted for %q).
func (c Card) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c.String()) }

// LogValue returns a group of the scheme, the masked PAN, the expiry and
// whether a CVC and a name are present.
func (c Card) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("scheme", string(c.PAN.Scheme())),
		slog.String("number", c.PAN.Masked()),
		slog.String("exp", c.Expiry.String()),
		slog.Bool("has_cvc", !c.CVC.IsZero()),
		slog.Bool("has_name", c.Name != ""),
	)
}
