package forwarding

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/cardvault/cardvault/vault/card"
)

// Redacted forms in stored records.
const (
	cvcMask    = "***"
	secretMask = "[REDACTED]"
)

// alwaysSecret are request headers whose values are always credentials.
var alwaysSecret = []string{"Authorization", "Proxy-Authorization"}

// RedactRequest returns the forward's outbound body (as Build made it) and
// headers as they may be stored: a field dest locates for card_number that
// holds card's number becomes its first six and last four digits around
// '*'s (424242******4242), a card_cvc field holding the CVC becomes "***"
// (both as strings, whatever their JSON type was), and
// the values of dest's secret headers (and Authorization,
// Proxy-Authorization) become "[REDACTED]". Then, anywhere in the body and
// the header values, every PAN-like digit run (card.MaskPANs) and every
// spelling of card's number, even inside a longer digit run or split by
// spaces or dashes, is masked. Expiry and cardholder name are kept, as
// Stripe keeps them. It never fails: a body that does not parse in dest's
// format gets the PAN masking only.
func RedactRequest(body []byte, header http.Header, dest Destination, cd card.Card) ([]byte, http.Header) {
	numbers, cvcs := fieldPaths(dest, CardNumber), fieldPaths(dest, CardCVC)
	cvc := cd.CVC.Reveal()
	out, err := rewrite(dest.Format, body, func(s slot) (edit, bool) {
		switch {
		case anyMatch(numbers, s.path) && containsKnownPAN(s.value, cd.PAN):
			return edit{text: cd.PAN.Masked()}, true
		case anyMatch(cvcs, s.path) && cvc != "" && s.value == cvc:
			return edit{text: cvcMask}, true
		}
		return edit{}, false
	})
	if err != nil {
		out = bytes.Clone(body)
	}
	return scrubPAN(out, cd.PAN), redactHeaders(header, dest.SecretHeaders, cd)
}

// fieldPaths returns the parsed paths of dest's fields for r.
func fieldPaths(dest Destination, r Replacement) [][]string {
	var paths [][]string
	for _, f := range dest.Fields[r] {
		if p, err := parsePath(dest.Format, f.Path); err == nil {
			paths = append(paths, p)
		}
	}
	return paths
}

// anyMatch reports whether one of patterns matches path.
func anyMatch(patterns [][]string, path []string) bool {
	for _, p := range patterns {
		if pathMatches(p, path) {
			return true
		}
	}
	return false
}

// redactHeaders returns a copy of h with the secret headers' values
// replaced and card data masked in the others.
func redactHeaders(h http.Header, secret []string, cd card.Card) http.Header {
	out := make(http.Header, len(h))
	isSecret := map[string]bool{}
	for _, name := range append(append([]string(nil), alwaysSecret...), secret...) {
		isSecret[http.CanonicalHeaderKey(name)] = true
	}
	for name, values := range h {
		red := make([]string, len(values))
		for i, v := range values {
			if isSecret[http.CanonicalHeaderKey(name)] {
				red[i] = secretMask
			} else {
				red[i] = string(scrubPAN([]byte(maskCVCRuns(v, cd.CVC)), cd.PAN))
			}
		}
		out[name] = red
	}
	return out
}

// RedactResponse returns the destination's answer as it may be stored.
// Every PAN-like digit run and every spelling of card's number is masked as
// in RedactRequest. Echoes of the CVC are masked too, by this rule: in a
// JSON body, a number equal to the CVC, and in text (JSON strings, the text
// of XML elements without child elements, XML attribute values, header
// values, and the whole of a body that is neither JSON nor XML) a run of
// digits equal to the CVC that is bounded by non-digits and is not part of
// a decimal such as 123.45, becomes "***". Object keys, tag names and
// digits inside longer numbers are never touched; neither are XML comments
// nor text beside child elements.
//
// Why this rule: an echoed CVC may stand under any key (cvc, cvv, cvc2,
// securityCode, card_code …) or inside a message ("CVC 123 invalid"), so
// matching on key names would miss some; what cannot be missed is the
// value itself. A false match costs one 3–4 digit value masked in a stored
// record (an amount of 123 when the CVC is 123); a miss would store
// sensitive authentication data, which PCI DSS forbids. Digits inside a
// longer number (41234, 1.123) are never the CVC standing alone and are
// left as they are.
func RedactResponse(body []byte, header http.Header, cd card.Card) ([]byte, http.Header) {
	out := redactStructured(body, cd)
	return scrubPAN(out, cd.PAN), redactHeaders(header, nil, cd)
}

// redactStructured masks CVC echoes (and PANs inside encoded strings) in a
// JSON or XML body, or in raw text when the body is neither.
func redactStructured(body []byte, cd card.Card) []byte {
	visit := responseVisitor(cd)
	if json.Valid(body) {
		if out, err := rewriteJSON(body, visit); err == nil {
			return out
		}
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '<' {
		if out, err := rewriteXML(body, visit); err == nil {
			return out
		}
	}
	return []byte(maskCVCRuns(string(body), cd.CVC))
}

// responseVisitor masks CVC echoes and PANs in decoded values.
func responseVisitor(cd card.Card) visitor {
	cvc := cd.CVC.Reveal()
	return func(s slot) (edit, bool) {
		switch s.kind {
		case kindNumber:
			if cvc != "" && s.value == cvc {
				return edit{text: cvcMask}, true
			}
			if card.ContainsPAN(s.value) || containsKnownPAN(s.value, cd.PAN) {
				return edit{text: string(scrubPAN([]byte(s.value), cd.PAN))}, true
			}
		case kindString, kindText:
			red := string(scrubPAN([]byte(maskCVCRuns(s.value, cd.CVC)), cd.PAN))
			if red != s.value {
				return edit{text: red}, true
			}
		}
		return edit{}, false
	}
}

// maskCVCRuns replaces each run of digits in s that equals cvc, is bounded
// by non-digits and is not part of a decimal number, with "***".
func maskCVCRuns(s string, cvc card.CVC) string {
	digits := cvc.Reveal()
	if digits == "" || !strings.Contains(s, digits) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := digitRunEnd(s, i)
		if j == i {
			b.WriteByte(s[i])
			i++
			continue
		}
		if s[i:j] == digits && !decimalNeighbour(s, i, j) {
			b.WriteString(cvcMask)
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

// digitRunEnd returns the end of the digit run starting at i (i itself when
// s[i] is no digit).
func digitRunEnd(s string, i int) int {
	j := i
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	return j
}

// decimalNeighbour reports whether the run s[i:j] is joined to more digits
// by a decimal point or comma (1.123, 123,45).
func decimalNeighbour(s string, i, j int) bool {
	before := i >= 2 && (s[i-1] == '.' || s[i-1] == ',') && isDigit(s[i-2])
	after := j+1 < len(s) && (s[j] == '.' || s[j] == ',') && isDigit(s[j+1])
	return before || after
}

// scrubPAN masks every PAN-like run (card.MaskPANs) and then every
// occurrence of pan's digits — overlapping ones too, inside longer digit
// runs, and with single spaces or dashes between digits — keeping the
// first six and last four of each. The result never holds pan's digits.
func scrubPAN(b []byte, pan card.PAN) []byte {
	out := []byte(card.MaskPANs(string(b)))
	digits := pan.Reveal()
	if digits == "" {
		return out
	}
	src := bytes.Clone(out)
	buf := make([]int, 0, len(digits))
	for i := range src {
		if pos := matchPANAt(src, i, digits, buf); pos != nil {
			for k := 6; k < len(pos)-4; k++ {
				out[pos[k]] = '*'
			}
		}
	}
	return out
}

// HoldsCardNumber reports whether s holds cd's card number, as the
// redaction finds it (digits with single spaces or dashes between them).
func HoldsCardNumber(s string, cd card.Card) bool { return containsKnownPAN(s, cd.PAN) }

// containsKnownPAN reports whether s holds pan's digits as scrubPAN finds
// them.
func containsKnownPAN(s string, pan card.PAN) bool {
	digits := pan.Reveal()
	if digits == "" {
		return false
	}
	b, buf := []byte(s), make([]int, 0, len(digits))
	for i := range b {
		if matchPANAt(b, i, digits, buf) != nil {
			return true
		}
	}
	return false
}

// matchPANAt returns the positions of digits' characters when b holds them
// from i on, allowing one space or dash between two digits; nil otherwise.
// The positions are appended to buf[:0].
func matchPANAt(b []byte, i int, digits string, buf []int) []int {
	if b[i] != digits[0] {
		return nil
	}
	pos := buf[:0]
	j := i
	for k := 0; k < len(digits); k++ {
		if k > 0 && j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && b[j+1] == digits[k] {
			j++
		}
		if j >= len(b) || b[j] != digits[k] {
			return nil
		}
		pos = append(pos, j)
		j++
	}
	return pos
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// RemoteTokenID returns the destination's own token id from its JSON
// answer: the string or number at dest.RemoteTokenPath. ok is false when
// dest has no such path, the body is not JSON, or nothing is there.
func RemoteTokenID(dest Destination, body []byte) (id string, ok bool) {
	path, err := parsePath(FormatJSON, dest.RemoteTokenPath)
	if err != nil || dest.RemoteTokenPath == "" {
		return "", false
	}
	_, err = rewriteJSON(body, func(s slot) (edit, bool) {
		if !ok && (s.kind == kindString || s.kind == kindNumber) && pathMatches(path, s.path) {
			id, ok = s.value, true
		}
		return edit{}, false
	})
	if err != nil {
		return "", false
	}
	return id, ok
}
