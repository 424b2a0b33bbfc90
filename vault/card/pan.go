package card

import (
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// PAN lengths ISO/IEC 7812 allows, and the request field a PAN comes from.
const (
	panMinLen   = 12
	panMaxLen   = 19
	paramNumber = "card.number"
)

// PAN is a validated primary account number (card number). It cannot print
// itself: String, GoString, Format (every verb, %v %+v %#v %s %q %x %d …),
// MarshalJSON and LogValue all give the masked form (Masked). Reveal is the
// only way to the digits. The zero value is no PAN; use ParsePAN to make one.
//
// The digits are held scrambled (see scramble), so that printers that bypass
// these methods through reflection — %p, a PAN inside an unexported struct
// field, debugger dumps — show no digits either. Equal PANs compare equal
// with ==.
type PAN struct {
	scrambled string // the digits XOR scrambleKey; "" for no PAN
}

// ParsePAN validates s as a card number and returns it as a PAN. ASCII
// spaces and dashes are removed first. On error it returns the zero PAN and
// a *FieldError for param "card.number": code
// "invalid_number" when s is empty, holds any other character than digits,
// spaces and dashes, or has fewer than 12 or more than 19 digits; code
// "incorrect_number" when it fails the Luhn check. The error never quotes s.
func ParsePAN(s string) (PAN, error) {
	var buf [panMaxLen]byte
	n, err := panDigits(&buf, s)
	if err != nil {
		return PAN{}, err
	}
	digits := buf[:n]
	if !luhn(digits) {
		return PAN{}, invalid(CodeIncorrectNumber, paramNumber, "card number failed the Luhn check")
	}
	scramble(digits)
	return PAN{scrambled: string(digits)}, nil
}

// panDigits copies the digits of s into buf, skipping ASCII spaces and
// dashes, and returns how many there are. It returns an "invalid_number"
// *FieldError when s has no digits, another character, or a digit count outside
// 12–19.
func panDigits(buf *[panMaxLen]byte, s string) (int, error) {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if n == panMaxLen {
				return 0, errPANLength()
			}
			buf[n] = c
			n++
		case c == ' ' || c == '-':
		default:
			return 0, invalid(CodeInvalidNumber, paramNumber, "card number must contain only digits, spaces and dashes")
		}
	}
	switch {
	case n == 0:
		return 0, invalid(CodeInvalidNumber, paramNumber, "card number is required")
	case n < panMinLen:
		return 0, errPANLength()
	}
	return n, nil
}

// errPANLength returns the error for a card number of the wrong length.
func errPANLength() *FieldError {
	return invalid(CodeInvalidNumber, paramNumber, "card number must be 12 to 19 digits")
}

// Luhn reports whether digits passes the Luhn (mod 10) check. It returns
// false when digits is empty or holds anything but ASCII digits.
func Luhn(digits string) bool {
	return luhn(digits)
}

// luhn is Luhn for strings and byte slices.
func luhn[T ~string | ~[]byte](digits T) bool {
	if len(digits) == 0 {
		return false
	}
	sum, double := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// Reveal returns the digits of the PAN, or "" for the zero PAN. It is the
// only way to them: keep its result out of logs, errors and responses.
func (p PAN) Reveal() string {
	var buf [panMaxLen]byte
	return string(p.unscramble(&buf))
}

// Masked returns the PAN with its first six and last four digits and one
// '*' for every digit between, so it keeps the PAN's length
// (424242******4242). It returns "" for the zero PAN.
func (p PAN) Masked() string {
	var buf [panMaxLen]byte
	digits := p.unscramble(&buf)
	n := len(digits)
	if n < panMinLen { // only a PAN not made by ParsePAN; hide everything
		return strings.Repeat("*", n)
	}
	for i := 6; i < n-4; i++ {
		digits[i] = '*'
	}
	return string(digits)
}

// IIN returns the first six digits (the issuer identification number), or
// "" for the zero PAN.
func (p PAN) IIN() string {
	if p.Len() < panMinLen {
		return ""
	}
	var buf [panMaxLen]byte
	return string(p.unscramble(&buf)[:6])
}

// LastFour returns the last four digits, or "" for the zero PAN.
func (p PAN) LastFour() string {
	n := p.Len()
	if n < panMinLen {
		return ""
	}
	var buf [panMaxLen]byte
	return string(p.unscramble(&buf)[n-4:])
}

// Len returns the number of digits, 12 to 19, or 0 for the zero PAN.
func (p PAN) Len() int { return len(p.scrambled) }

// Scheme returns the card brand of the PAN (see DetectScheme), or
// SchemeUnknown for the zero PAN.
func (p PAN) Scheme() Scheme {
	var buf [panMaxLen]byte
	return detectScheme(p.unscramble(&buf))
}

// IsZero reports whether p is the zero PAN (no card number).
func (p PAN) IsZero() bool { return p.scrambled == "" }

// String returns Masked: never the digits.
func (p PAN) String() string { return p.Masked() }

// GoString returns Masked, so %#v shows no digits either.
func (p PAN) GoString() string { return p.Masked() }

// Format prints Masked for every verb (quoted for %q), so no fmt verb can
// print the digits.
func (p PAN) Format(f fmt.State, verb rune) { formatRedacted(f, verb, p.Masked()) }

// MarshalJSON returns Masked as a JSON string ("" for the zero PAN). It
// never fails.
func (p PAN) MarshalJSON() ([]byte, error) { return jsonString(p.Masked()), nil }

// LogValue returns Masked as a slog string value.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Masked()) }

// unscramble writes the digits into buf and returns them; nil for the zero
// PAN.
func (p PAN) unscramble(buf *[panMaxLen]byte) []byte {
	n := copy(buf[:], p.scrambled)
	scramble(buf[:n])
	return buf[:n]
}

// scrambleKey turns ASCII digits into non-ASCII bytes. It is not
// encryption, only a guard against reflection printers showing card digits
// by accident.
var scrambleKey = [panMaxLen]byte{
	0xA5, 0xC3, 0x96, 0xE9, 0xB7, 0xD2, 0x8B, 0xF4, 0x9E, 0xC6,
	0xAD, 0xE1, 0x93, 0xBC, 0xD8, 0x87, 0xFA, 0xB1, 0xCE,
}

// scramble XORs b in place with scrambleKey; it is its own inverse.
func scramble(b []byte) {
	for i := range b {
		b[i] ^= scrambleKey[i%len(scrambleKey)]
	}
}

// formatRedacted prints s, an already-redacted form, for any fmt verb: %q
// quotes it and every other verb prints it as %s would, keeping the flags,
// width and precision.
func formatRedacted(f fmt.State, verb rune, s string) {
	spec := fmt.FormatString(f, verb)
	if verb != 'q' {
		_, size := utf8.DecodeLastRuneInString(spec)
		spec = spec[:len(spec)-size] + "s"
	}
	fmt.Fprintf(f, spec, s)
}

// jsonString returns s as a JSON string. s must need no escaping (digits,
// '*', '/' and letters do not).
func jsonString(s string) []byte {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
