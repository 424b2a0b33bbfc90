package forwarding

import (
	"fmt"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// Format is the encoding of a destination's request body.
type Format string

// The body formats a destination can take.
const (
	FormatJSON Format = "json" // application/json
	FormatForm Format = "form" // application/x-www-form-urlencoded
	FormatXML  Format = "xml"  // application/xml or text/xml
)

// Replacement names a card field a forward asks the vault to fill in, as in
// Stripe's ForwardingRequest "replacements".
type Replacement string

// The replacements Stripe's API names.
const (
	CardNumber       Replacement = "card_number"
	CardExpiry       Replacement = "card_expiry"
	CardCVC          Replacement = "card_cvc"
	CardholderName   Replacement = "cardholder_name"
	RequestSignature Replacement = "request_signature"
)

// replacements lists every Replacement, in the order Stripe documents them.
var replacements = []Replacement{CardNumber, CardExpiry, CardCVC, CardholderName, RequestSignature}

// Timeouts of a destination.
const (
	DefaultTimeout = 30 * time.Second
	MaxTimeout     = 60 * time.Second
)

// Limits on a destination's configuration.
const (
	maxFieldsPerReplacement = 2
	maxSecretHeaders        = 16
	maxPathLen              = 512
)

// Error codes of this package.
const (
	// CodeInvalidDestination is the code of every Validate error.
	CodeInvalidDestination = "invalid_destination"
	// CodeInvalidParameter is Stripe's code for a bad forward request
	// (replacements, body).
	CodeInvalidParameter = "forwarding_api_invalid_parameter"
	// CodeCVCUnavailable means card_cvc was asked for but the vault holds
	// no CVC for the card any more (used or expired).
	CodeCVCUnavailable = "cvc_unavailable"
)

// Destination is one entry of a tenant's forwarding allow-list: where a
// card may be sent and how the card goes into the body.
type Destination struct {
	// URL is the pattern a forward's url must match: an https URL (http
	// only for loopback when loopback is allowed) with a DNS host, an
	// optional port, no user information, query or fragment, and a path
	// that is exact or a prefix ending in "/*".
	URL string `json:"url"`
	// Format is the body's encoding.
	Format Format `json:"format"`
	// Fields locates each replacement in the body: a JSON path of keys and
	// array indices joined by dots ("card.number", "items.0.pan"), a form
	// key ("card[exp_year]"), or an XML element path from the root joined
	// by slashes, ending in "@name" for an attribute
	// ("paymentService/submit/order/paymentDetails/CARD-SSL/expiryDate/date@month").
	// A segment "*" matches any one key, index or element. card_expiry
	// takes one field (a combined layout such as MM/YY) or two (month and
	// year); the others take one.
	Fields map[Replacement][]Field `json:"fields"`
	// SecretHeaders are request headers holding credentials: their values
	// are replaced in stored records (Authorization and
	// Proxy-Authorization always are).
	SecretHeaders []string `json:"secret_headers,omitempty"`
	// TimeoutMs bounds the exchange with the destination; 0 means 30 s,
	// at most 60 s.
	TimeoutMs int `json:"timeout_ms,omitempty"`
	// Signature, when set, is how request_signature is computed.
	Signature *Signature `json:"signature,omitempty"`
	// RemoteTokenPath is the JSON path of the destination's own token id in
	// its answer, for export jobs (see RemoteTokenID); "" when none.
	RemoteTokenPath string `json:"remote_token_path,omitempty"`
}

// Field is one place a replacement is written to.
type Field struct {
	// Path locates the field (see Destination.Fields).
	Path string `json:"path"`
	// Expiry is how a card_expiry field is written: MM, M, YY, YYYY,
	// MM/YY, MM/YYYY, MMYY, YYMM or YYYY-MM. Only card_expiry fields have
	// one.
	Expiry string `json:"expiry,omitempty"`
}

// Signature is a request signature rule: HMAC-SHA256 with Secret over the
// final body (card fields filled, the signature field itself as the
// merchant left it), written to Header, or to the request_signature field
// of Destination.Fields when Header is "".
type Signature struct {
	// Secret is the HMAC key. It is never serialised: the caller keeps it
	// sealed and sets it before use.
	Secret card.Secret `json:"-"`
	// Encoding of the MAC: "hex" (lower case) or "base64" (standard,
	// padded).
	Encoding string `json:"encoding"`
	// Header receives the signature, or "" to write it into the body.
	Header string `json:"header,omitempty"`
}

// Timeout returns how long an exchange with d may take: TimeoutMs, or
// DefaultTimeout when it is 0.
func (d Destination) Timeout() time.Duration {
	if d.TimeoutMs <= 0 {
		return DefaultTimeout
	}
	return time.Duration(d.TimeoutMs) * time.Millisecond
}

// Validate checks d. allowLoopback admits loopback destinations (localhost,
// 127.0.0.0/8, [::1]) and plain http for them, for development and tests.
// It returns nil or a *vault.Error of kind KindInvalid, code
// "invalid_destination", whose Param names the faulty setting: "url",
// "format", "fields", "fields.<replacement>", "secret_headers",
// "timeout_ms", "signature", "signature.encoding", "signature.secret",
// "signature.header" or "remote_token_path".
func (d Destination) Validate(allowLoopback bool) error {
	if _, err := parsePattern(d.URL, allowLoopback); err != nil {
		return invalidDest("url", err.Error())
	}
	for _, check := range []func() error{d.validateFormat, d.validateFields, d.validateSecretHeaders,
		d.validateTimeout, d.validateSignature, d.validateRemoteTokenPath} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// invalidDest returns the Validate error for param.
func invalidDest(param, message string) error {
	return vault.InvalidParam(CodeInvalidDestination, param, message)
}

// validateFormat accepts the three formats.
func (d Destination) validateFormat() error {
	switch d.Format {
	case FormatJSON, FormatForm, FormatXML:
		return nil
	}
	return invalidDest("format", "format must be json, form or xml")
}

// validateFields checks each replacement's fields and that no two fields
// share a path.
func (d Destination) validateFields() error {
	if len(d.Fields) == 0 {
		return invalidDest("fields", "fields must locate at least one replacement")
	}
	seen := map[string]bool{}
	for r, fields := range d.Fields {
		if err := d.validateReplacement(r, fields); err != nil {
			return err
		}
		for _, f := range fields {
			key := canonicalPath(d.Format, f.Path)
			if seen[key] {
				return invalidDest("fields", "two fields share one path")
			}
			seen[key] = true
		}
	}
	return nil
}

// validateReplacement checks the fields of replacement r.
func (d Destination) validateReplacement(r Replacement, fields []Field) error {
	if !knownReplacement(r) {
		return invalidDest("fields", "fields keys must be card_number, card_expiry, card_cvc, cardholder_name or request_signature")
	}
	param := "fields." + string(r)
	limit := 1
	if r == CardExpiry {
		limit = maxFieldsPerReplacement
	}
	if len(fields) == 0 || len(fields) > limit {
		return invalidDest(param, fmt.Sprintf("%s takes 1 to %d fields", r, limit))
	}
	for _, f := range fields {
		if err := d.validateField(r, f, param); err != nil {
			return err
		}
	}
	if r == CardExpiry {
		return validateExpiryParts(fields, param)
	}
	return nil
}

// validateExpiryParts accepts one combined layout, or a month layout and a
// year layout.
func validateExpiryParts(fields []Field, param string) error {
	parts := map[expiryPart]int{}
	for _, f := range fields {
		parts[expiryLayouts[f.Expiry].part]++
	}
	if parts[partBoth] == 1 && len(fields) == 1 || parts[partMonth] == 1 && parts[partYear] == 1 {
		return nil
	}
	return invalidDest(param, "card_expiry takes one combined field (such as MM/YY) or a month field and a year field")
}

// validateField checks one field's path and expiry layout.
func (d Destination) validateField(r Replacement, f Field, param string) error {
	if _, err := parsePath(d.Format, f.Path); err != nil {
		return invalidDest(param, err.Error())
	}
	if r != CardExpiry {
		if f.Expiry != "" {
			return invalidDest(param, "only card_expiry fields take an expiry layout")
		}
		return nil
	}
	if _, ok := expiryLayouts[f.Expiry]; !ok {
		return invalidDest(param, "expiry must be MM, M, YY, YYYY, MM/YY, MM/YYYY, MMYY, YYMM or YYYY-MM")
	}
	return nil
}

// validateSecretHeaders checks the header names.
func (d Destination) validateSecretHeaders() error {
	if len(d.SecretHeaders) > maxSecretHeaders {
		return invalidDest("secret_headers", fmt.Sprintf("at most %d secret headers", maxSecretHeaders))
	}
	for _, h := range d.SecretHeaders {
		if !validHeaderName(h) {
			return invalidDest("secret_headers", "secret header names must be HTTP header names")
		}
	}
	return nil
}

// validateTimeout accepts 0 (default) to 60000 ms.
func (d Destination) validateTimeout() error {
	if d.TimeoutMs < 0 || time.Duration(d.TimeoutMs)*time.Millisecond > MaxTimeout {
		return invalidDest("timeout_ms", "timeout_ms must be from 0 (30 s) to 60000")
	}
	return nil
}

// validateSignature checks the signature rule and where it is written.
func (d Destination) validateSignature() error {
	_, inBody := d.Fields[RequestSignature]
	s := d.Signature
	switch {
	case s == nil && inBody:
		return invalidDest("signature", "a request_signature field needs a signature rule")
	case s == nil:
		return nil
	case s.Encoding != "hex" && s.Encoding != "base64":
		return invalidDest("signature.encoding", "signature encoding must be hex or base64")
	case s.Secret.IsZero():
		return invalidDest("signature.secret", "signature secret is required")
	case (s.Header != "") == inBody:
		return invalidDest("signature.header", "the signature goes to exactly one place: a header or a request_signature field")
	case s.Header != "" && !validHeaderName(s.Header):
		return invalidDest("signature.header", "signature header must be an HTTP header name")
	}
	return nil
}

// validateRemoteTokenPath checks the JSON path, when set.
func (d Destination) validateRemoteTokenPath() error {
	if d.RemoteTokenPath == "" {
		return nil
	}
	if _, err := parsePath(FormatJSON, d.RemoteTokenPath); err != nil {
		return invalidDest("remote_token_path", err.Error())
	}
	return nil
}

// knownReplacement reports whether r is one of the five replacements.
func knownReplacement(r Replacement) bool {
	for _, k := range replacements {
		if r == k {
			return true
		}
	}
	return false
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
