package card

// ContainsPAN reports whether s holds a run of 12 to 19 consecutive ASCII
// digits (optionally split by single spaces or dashes) that passes the Luhn
// check: something that may be a card number and must not be stored or
// logged in plaintext.
func ContainsPAN(s string) bool {
	return nextPAN(s, 0) >= 0
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
