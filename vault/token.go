package vault

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/google/uuid"
)

// Token is the masked record of a stored card: everything a merchant may see
// without the tokens:reveal scope. It holds no PAN and no CVC.
type Token struct {
	ID             uuid.UUID
	TenantID       uuid.UUID
	BusinessKey    string // "" when none was given
	CardholderName string
	ExpiryMonth    int
	ExpiryYear     int
	IIN            string // first six digits
	LastFour       string
	PANLength      int
	Scheme         card.Scheme
	Fingerprint    []byte // keyed PRF of the PAN; equal cards of a tenant share it
	Metadata       map[string]string
	CVCAvailable   bool
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// MaskedAccountNumber returns the first six and last four digits with one
// '*' for each hidden digit, so the mask keeps the PAN's length.
func (t Token) MaskedAccountNumber() string {
	hidden := t.PANLength - len(t.IIN) - len(t.LastFour)
	if hidden < 0 {
		hidden = 0
	}
	return t.IIN + strings.Repeat("*", hidden) + t.LastFour
}

// Revealed is a detokenized card with its masked record. Card.PAN and
// Card.CVC print masked; only their Reveal methods give the digits.
type Revealed struct {
	Token Token
	Card  card.Card
}

// TokenizeInput is a card to store with its non-sensitive attributes.
type TokenizeInput struct {
	Card        card.CardInput
	BusinessKey string            // idempotency key within the tenant, e.g. Stripe's pm_…
	Metadata    map[string]string // non-sensitive key/value pairs
}

// Limits on the non-sensitive attributes of a token.
const (
	MaxBusinessKeyLen   = 255
	MaxMetadataKeys     = 50
	MaxMetadataKeyLen   = 40
	MaxMetadataValueLen = 500
	MaxReasonLen        = 500
)

// checkAttributes validates a business key and metadata. It returns a
// KindInvalid error naming the field; values that look like a card number
// are refused so that card data never lands in a plaintext column.
func checkAttributes(businessKey string, metadata map[string]string) error {
	if err := checkText(businessKey, MaxBusinessKeyLen, "metadata.business_key"); err != nil {
		return err
	}
	if len(metadata) > MaxMetadataKeys {
		return InvalidParam("invalid_metadata", "metadata", "metadata may have at most 50 keys")
	}
	for k, v := range metadata {
		if k == "" || utf8.RuneCountInString(k) > MaxMetadataKeyLen {
			return InvalidParam("invalid_metadata", "metadata", "metadata keys must be 1 to 40 characters")
		}
		if err := checkText(k, MaxMetadataKeyLen, "metadata"); err != nil {
			return err
		}
		if err := checkText(v, MaxMetadataValueLen, "metadata."+k); err != nil {
			return err
		}
	}
	return nil
}

// checkText returns a KindInvalid error for param when s is not valid UTF-8,
// is longer than max runes, holds a control character or holds something
// that looks like a card number.
func checkText(s string, max int, param string) error {
	switch {
	case !utf8.ValidString(s):
		return InvalidParam("invalid_string", param, param+" must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return InvalidParam("string_too_long", param, param+" is too long")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return InvalidParam("invalid_string", param, param+" must not contain control characters")
	case card.ContainsPAN(s):
		return InvalidParam("sensitive_data", param, param+" must not contain a card number")
	}
	return nil
}
