package forwarding

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// expiryPart says which part of an expiry a layout writes.
type expiryPart int

const (
	partMonth expiryPart = iota
	partYear
	partBoth
)

// expiryLayout writes an expiry one way.
type expiryLayout struct {
	part     expiryPart
	combined bool
	format   func(card.Expiry) string
}

// expiryLayouts are the layouts a card_expiry field may take. A layout of
// one part (MM, M, YY, YYYY) writes its number into a JSON number blank (03
// as 3); a combined one is written as a string unless it is a number without
// a leading zero.
var expiryLayouts = map[string]expiryLayout{
	"MM":      {partMonth, false, func(e card.Expiry) string { return fmt.Sprintf("%02d", e.Month) }},
	"M":       {partMonth, false, func(e card.Expiry) string { return strconv.Itoa(e.Month) }},
	"YY":      {partYear, false, func(e card.Expiry) string { return fmt.Sprintf("%02d", e.Year%100) }},
	"YYYY":    {partYear, false, func(e card.Expiry) string { return fmt.Sprintf("%04d", e.Year) }},
	"MM/YY":   {partBoth, true, func(e card.Expiry) string { return fmt.Sprintf("%02d/%02d", e.Month, e.Year%100) }},
	"MM/YYYY": {partBoth, true, func(e card.Expiry) string { return fmt.Sprintf("%02d/%04d", e.Month, e.Year) }},
	"MMYY":    {partBoth, true, func(e card.Expiry) string { return fmt.Sprintf("%02d%02d", e.Month, e.Year%100) }},
	"YYMM":    {partBoth, true, func(e card.Expiry) string { return fmt.Sprintf("%02d%02d", e.Year%100, e.Month) }},
	"YYYY-MM": {partBoth, true, func(e card.Expiry) string { return fmt.Sprintf("%04d-%02d", e.Year, e.Month) }},
}

// Built is a forward's outbound request body, and the headers Build adds to
// the merchant's (the signature header, when the destination signs in one).
type Built struct {
	Body   []byte
	Header http.Header
}

// target is one value Build writes: where, and what. A target with
// missing set has no value: finding its field in the body is that error.
type target struct {
	path    []string
	edit    edit
	missing error
}

// Build fills card into body, the merchant's request body with its card
// fields left blank, for destination dest (already validated). Only the
// fields that are both in replacements and located by dest are written, and
// only where body has them: a missing field is not added. Every string,
// number or null at a located path is replaced (objects, arrays and
// booleans are left alone); a number stays a number when the value is one
// (a month as 3, a number without a leading zero), everything else becomes
// a string. The rest of the body is kept byte for byte. An empty cardholder
// name leaves its field as it is. With request_signature, the HMAC-SHA256
// of the filled body is then written to the signature header or field.
//
// It returns a *vault.Error of kind KindInvalid: code
// "forwarding_api_invalid_parameter" with param "replacements" for an
// unknown replacement or request_signature without a signature rule, or
// with param "request[body]" when body does not parse in dest's format;
// code "cvc_unavailable" (param "replacements") when card_cvc is asked for,
// the body has a CVC field, and card has no CVC. A dest or card that would
// not pass validation (a bad path, no number, no expiry) gives a
// KindInternal error. No error holds card data.
func Build(dest Destination, body []byte, replacements []string, cd card.Card) (Built, error) {
	want, err := requested(replacements)
	if err != nil {
		return Built{}, err
	}
	targets, err := cardTargets(dest, want, cd)
	if err != nil {
		return Built{}, err
	}
	var missing error
	out, err := rewrite(dest.Format, body, fill(targets, &missing))
	switch {
	case err != nil:
		return Built{}, errBody(dest.Format)
	case missing != nil:
		return Built{}, missing
	}
	built := Built{Body: out, Header: http.Header{}}
	if want[RequestSignature] {
		return sign(dest, built)
	}
	return built, nil
}

// requested returns the set of replacements, or an error for an unknown
// one (never quoting it).
func requested(names []string) (map[Replacement]bool, error) {
	want := make(map[Replacement]bool, len(names))
	for _, n := range names {
		r := Replacement(n)
		if !knownReplacement(r) {
			return nil, vault.InvalidParam(CodeInvalidParameter, "replacements",
				"replacements must be card_number, card_expiry, card_cvc, cardholder_name or request_signature")
		}
		want[r] = true
	}
	return want, nil
}

// cardTargets returns the values to write for the wanted card replacements
// dest locates.
func cardTargets(dest Destination, want map[Replacement]bool, cd card.Card) ([]target, error) {
	var targets []target
	for _, r := range []Replacement{CardNumber, CardExpiry, CardCVC, CardholderName} {
		fields := dest.Fields[r]
		if !want[r] || len(fields) == 0 {
			continue
		}
		for _, f := range fields {
			path, err := parsePath(dest.Format, f.Path)
			if err != nil {
				return nil, vault.Internal(fmt.Errorf("destination field path: %w", err))
			}
			t, ok, err := cardTarget(r, f, cd)
			if err != nil {
				return nil, err
			}
			if ok {
				t.path = path
				targets = append(targets, t)
			}
		}
	}
	return targets, nil
}

// errCVCUnavailable returns the error of a body with a CVC field to fill
// when the vault no longer holds the card's CVC.
func errCVCUnavailable() error {
	return vault.InvalidParam(CodeCVCUnavailable, "replacements",
		"the card's CVC is no longer held (used or expired): collect it again or leave card_cvc out")
}

// cardTarget returns what replacement r writes into field f (its path not
// yet set); ok is false when there is nothing to write (no cardholder
// name). A card without a CVC gives a target that fails only if the body
// has the CVC field.
func cardTarget(r Replacement, f Field, cd card.Card) (t target, ok bool, err error) {
	switch r {
	case CardNumber:
		if cd.PAN.IsZero() {
			return target{}, false, vault.Internal(fmt.Errorf("forward of a card without a number"))
		}
		return target{edit: numberEdit(cd.PAN.Reveal())}, true, nil
	case CardExpiry:
		e, err := expiryValue(f, cd.Expiry)
		return target{edit: e}, err == nil, err
	case CardCVC:
		if cd.CVC.IsZero() {
			return target{missing: errCVCUnavailable()}, true, nil
		}
		return target{edit: numberEdit(cd.CVC.Reveal())}, true, nil
	}
	return target{edit: edit{text: cd.Name}}, cd.Name != "", nil
}

// expiryValue formats the expiry for field f.
func expiryValue(f Field, exp card.Expiry) (edit, error) {
	layout, ok := expiryLayouts[f.Expiry]
	if !ok {
		return edit{}, vault.Internal(fmt.Errorf("destination expiry layout %q", f.Expiry))
	}
	if exp.IsZero() {
		return edit{}, vault.Internal(fmt.Errorf("forward of a card without an expiry"))
	}
	s := layout.format(exp)
	if !layout.combined {
		n, _ := strconv.Atoi(s) // digits by construction
		return edit{text: s, num: strconv.Itoa(n)}, nil
	}
	return numberEdit(s), nil
}

// fill is the visitor that writes targets into the slots they locate. A
// located target without a value sets *missing to its error.
func fill(targets []target, missing *error) visitor {
	return func(s slot) (edit, bool) {
		if s.kind == kindBool {
			return edit{}, false
		}
		for _, t := range targets {
			if !pathMatches(t.path, s.path) {
				continue
			}
			if t.missing != nil {
				*missing = t.missing
				return edit{}, false
			}
			return t.edit, true
		}
		return edit{}, false
	}
}

// errBody is the error of a body that does not parse as f.
func errBody(f Format) error {
	return vault.InvalidParam(CodeInvalidParameter, "request[body]",
		fmt.Sprintf("request body is not a valid %s document for this destination", formatName(f)))
}

// formatName names f for messages.
func formatName(f Format) string {
	switch f {
	case FormatJSON:
		return "JSON"
	case FormatXML:
		return "XML"
	}
	return "form-encoded"
}

// sign adds the request signature to b.
func sign(dest Destination, b Built) (Built, error) {
	s := dest.Signature
	if s == nil || s.Secret.IsZero() {
		return Built{}, vault.InvalidParam(CodeInvalidParameter, "replacements",
			"request_signature needs a destination with a signature rule")
	}
	sig := Sign(s, b.Body)
	if s.Header != "" {
		b.Header.Set(s.Header, sig)
		return b, nil
	}
	return signField(dest, b, sig)
}

// signField writes sig into the body's request_signature field.
func signField(dest Destination, b Built, sig string) (Built, error) {
	var targets []target
	for _, f := range dest.Fields[RequestSignature] {
		path, err := parsePath(dest.Format, f.Path)
		if err != nil {
			return Built{}, vault.Internal(fmt.Errorf("destination signature path: %w", err))
		}
		targets = append(targets, target{path: path, edit: edit{text: sig}})
	}
	var missing error
	out, err := rewrite(dest.Format, b.Body, fill(targets, &missing))
	if err != nil {
		return Built{}, errBody(dest.Format)
	}
	b.Body = out
	return b, nil
}

// Sign returns the HMAC-SHA256 of body under s.Secret, encoded as s says
// (lower-case hex, or padded standard base64). A receiver checks a
// signature written into the body by blanking that field first.
func Sign(s *Signature, body []byte) string {
	mac := hmac.New(sha256.New, []byte(s.Secret.Reveal()))
	mac.Write(body)
	sum := mac.Sum(nil)
	if s.Encoding == "base64" {
		return base64.StdEncoding.EncodeToString(sum)
	}
	return hex.EncodeToString(sum)
}
