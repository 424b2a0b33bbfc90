package card

import (
	"fmt"
	"strings"
)

// The request fields of a card's expiry.
const (
	paramExpMonth = "card.exp_month"
	paramExpYear  = "card.exp_year"
)

// Expiry is a card's expiry month (1–12) and four-digit year (2000–2099).
// The zero value is no expiry.
type Expiry struct {
	Month int
	Year  int
}

// ParseExpiry validates a card's expiry month and year, each given as a
// decimal string with surrounding whitespace ignored. The month is one or
// two digits, 1 to 12 ("4", "04"); the year is four digits, 2000 to 2099, or
// two digits meaning 20xx ("33" is 2033). Past dates are accepted: a vault
// keeps expired cards. On error it returns the zero Expiry and a *FieldError:
// code "invalid_expiry_month" for param "card.exp_month"
// when the month is missing or invalid, else code "invalid_expiry_year" for
// param "card.exp_year" when the year is. The error never quotes the input.
func ParseExpiry(month, year string) (Expiry, error) {
	m, err := parseExpMonth(month)
	if err != nil {
		return Expiry{}, err
	}
	y, err := parseExpYear(year)
	if err != nil {
		return Expiry{}, err
	}
	return Expiry{Month: m, Year: y}, nil
}

// parseExpMonth returns the month s names, or an "invalid_expiry_month"
// *FieldError.
func parseExpMonth(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, invalid(CodeInvalidExpiryMonth, paramExpMonth, "card expiry month is required")
	}
	m, ok := smallDecimal(s, 2)
	if !ok || m < 1 || m > 12 {
		return 0, invalid(CodeInvalidExpiryMonth, paramExpMonth, "card expiry month must be a number from 1 to 12")
	}
	return m, nil
}

// parseExpYear returns the four-digit year s names, or an
// "invalid_expiry_year" *FieldError.
func parseExpYear(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, invalid(CodeInvalidExpiryYear, paramExpYear, "card expiry year is required")
	}
	y, ok := smallDecimal(s, 4)
	if len(s) == 2 {
		y += 2000
	}
	if !ok || (len(s) != 2 && len(s) != 4) || y < 2000 || y > 2099 {
		return 0, invalid(CodeInvalidExpiryYear, paramExpYear, "card expiry year must be 2 digits or 4 digits from 2000 to 2099")
	}
	return y, nil
}

// smallDecimal returns the value of s, 1 to maxLen ASCII digits; ok is
// false for anything else (signs, spaces, longer strings).
func smallDecimal(s string, maxLen int) (v int, ok bool) {
	if len(s) == 0 || len(s) > maxLen {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// IsZero reports whether e is the zero Expiry (no expiry).
func (e Expiry) IsZero() bool { return e == Expiry{} }

// String returns the expiry as MM/YYYY ("04/2033"), or "" for the zero
// Expiry.
func (e Expiry) String() string {
	if e.IsZero() {
		return ""
	}
	return fmt.Sprintf("%02d/%04d", e.Month, e.Year)
}
