package card

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ContainsPAN reports whether s holds something that may be a card number
// and must not be stored or logged in plaintext: after normalisation
// (percent-encoding decoded, Unicode NFKC so that full-width and other
// compatibility digits become ASCII, digits of any script read as digits,
// separators and invisible characters dropped), a window of 12 to 19
// consecutive digits anywhere in a digit run — glued to other digits too —
// that passes the Luhn check.
func ContainsPAN(s string) bool {
	for _, run := range scanRuns(normalizeForScan(s)) {
		if hasLuhnWindow(run) {
			return true
		}
	}
	return false
}

// maxPercentRounds bounds how often percent-encoding is decoded, so that
// "%2534" (an encoded "%34") is read as "4" and no input loops.
const maxPercentRounds = 3

// normalizeForScan returns s as the PAN scan reads it: percent-decoded (up
// to maxPercentRounds times), then NFKC-normalised.
func normalizeForScan(s string) string {
	for range maxPercentRounds {
		d := percentDecode(s)
		if d == s {
			break
		}
		s = d
	}
	return norm.NFKC.String(s)
}

// percentDecode replaces every valid %XX escape of s by its byte, leaving
// anything else (a lone '%', invalid hex) as it is.
func percentDecode(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			if b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		if b != nil {
			b = append(b, s[i])
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// scanRuns splits s into its runs of digits: a digit of any script counts
// as its value, a separator (see isScanSeparator) is skipped, anything else
// ends the run. Runs shorter than 12 digits are dropped.
func scanRuns(s string) [][]byte {
	var runs [][]byte
	var cur []byte
	flush := func() {
		if len(cur) >= 12 {
			runs = append(runs, cur)
		}
		cur = nil
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r >= '0' && r <= '9':
			cur = append(cur, byte(r))
		case unicode.IsDigit(r):
			cur = append(cur, '0'+digitValue(r))
		case isScanSeparator(r):
		default:
			flush()
		}
	}
	flush()
	return runs
}

// digitValue returns the value of r, a decimal digit of any script: Unicode
// lays each script's digits out as ten consecutive code points from zero.
func digitValue(r rune) byte {
	zero := r
	for zero > r-9 && unicode.IsDigit(zero-1) {
		zero--
	}
	return byte((r - zero) % 10)
}

// isScanSeparator reports whether r may stand between the digits of a card
// number someone disguised: white space of any kind, invisible format
// characters (zero-width space, soft hyphen, BOM…), dashes, and . / \ _ , + ( ).
func isScanSeparator(r rune) bool {
	switch r {
	case '.', '/', '\\', '_', ',', '+', '(', ')':
		return true
	}
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Pd, r) || unicode.Is(unicode.Mn, r)
}

// hasLuhnWindow reports whether some 12–19-digit window of run, starting
// anywhere, passes the Luhn check.
func hasLuhnWindow(run []byte) bool {
	for start := 0; start+12 <= len(run); start++ {
		for end := start + 12; end <= len(run) && end-start <= 19; end++ {
			if Luhn(string(run[start:end])) {
				return true
			}
		}
	}
	return false
}

// MaskPANs returns s with every PAN-like run (as ContainsPAN finds them)
// replaced by its first six and last four digits around '*'s.
func MaskPANs(s string) string {
	b := []byte(nil)
	for i := 0; i < len(s); {
		start := nextPAN(s, i)
		if start < 0 {
			break
		}
		if b == nil {
			b = []byte(s)
		}
		end := panRunEnd(s, start)
		maskRun(b[start:end])
		i = end
	}
	if b == nil {
		return s
	}
	return string(b)
}

// nextPAN returns the index of the first PAN-like digit run at or after
// from, or -1.
func nextPAN(s string, from int) int {
	for i := from; i < len(s); i++ {
		if !isDigit(s[i]) || (i > 0 && isDigit(s[i-1])) {
			continue
		}
		if end := panRunEnd(s, i); end > i {
			return i
		}
	}
	return -1
}

// panRunEnd returns the end of a PAN-like run that starts at start: the
// longest 12–19-digit Luhn-valid window of the digit run. It returns start
// when there is none.
func panRunEnd(s string, start int) int {
	digits := make([]byte, 0, 19)
	best := start
	for i := start; i < len(s) && len(digits) < 19; i++ {
		c := s[i]
		if isDigit(c) {
			digits = append(digits, c)
			if len(digits) >= 12 && Luhn(string(digits)) {
				best = i + 1
			}
			continue
		}
		if (c == ' ' || c == '-') && i+1 < len(s) && isDigit(s[i+1]) && isDigit(s[i-1]) {
			continue
		}
		break
	}
	return best
}

// maskRun keeps the first six and last four digits of run and stars the
// digits between; separators stay.
func maskRun(run []byte) {
	n := 0
	for _, c := range run {
		if isDigit(c) {
			n++
		}
	}
	seen := 0
	for i, c := range run {
		if !isDigit(c) {
			continue
		}
		if seen >= 6 && seen < n-4 {
			run[i] = '*'
		}
		seen++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
