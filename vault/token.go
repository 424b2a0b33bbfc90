package vault

import (
	"encoding/base64"
	"strings"
	"time"

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

// TokenRecord is the masked token record in its JSON shape: what the API
// answers for a token and what token webhook events carry as their data, so
// the two cannot drift apart. It never holds a PAN or a CVC.
type TokenRecord struct {
	ID                  uuid.UUID         `json:"id"`
	BusinessKey         *string           `json:"business_key"`
	CardholderName      *string           `json:"cardholder_name"`
	CreatedAt           string            `json:"created_at"`
	ExpiryMonth         int               `json:"expiry_month"`
	ExpiryYear          int               `json:"expiry_year"`
	MaskedAccountNumber string            `json:"masked_account_number"`
	Scheme              string            `json:"scheme"`
	IIN                 string            `json:"issuer_identification_number"`
	LastFour            string            `json:"account_number_last_four"`
	Length              int               `json:"account_number_length"`
	Fingerprint         string            `json:"fingerprint"`
	Metadata            map[string]string `json:"metadata"`
	CVCAvailable        bool              `json:"cvc_available"`
	UpdatedAt           string            `json:"updated_at"`
}

// Record returns the token's masked record: empty business key and name
// become null, times are RFC 3339 UTC with second precision (as the
// Stripe-forward contract shows them) and the fingerprint is unpadded
// base64url.
func (t Token) Record() TokenRecord {
	return TokenRecord{
		ID: t.ID, BusinessKey: optionalString(t.BusinessKey), CardholderName: optionalString(t.CardholderName),
		CreatedAt: Timestamp(t.CreatedAt), ExpiryMonth: t.ExpiryMonth, ExpiryYear: t.ExpiryYear,
		MaskedAccountNumber: t.MaskedAccountNumber(), Scheme: string(t.Scheme), IIN: t.IIN,
		LastFour: t.LastFour, Length: t.PANLength, Fingerprint: base64.RawURLEncoding.EncodeToString(t.Fingerprint),
		Metadata: t.Metadata, CVCAvailable: t.CVCAvailable, UpdatedAt: Timestamp(t.UpdatedAt),
	}
}

// optionalString maps "" to JSON null.
func optionalString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// fingerprintLen is the length in bytes of a card fingerprint.
const fingerprintLen = 32

// ParseFingerprint returns the fingerprint a token record shows as s
// (unpadded base64url of 32 bytes). It returns a KindBadRequest error
// (parameter_invalid, param "fingerprint") for anything else.
func ParseFingerprint(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != fingerprintLen {
		return nil, &Error{Kind: KindBadRequest, Code: CodeParameterInvalid, Param: "fingerprint",
			Message: "fingerprint must be a token's fingerprint: 43 characters of unpadded base64url"}
	}
	return b, nil
}

// ListTokensParams filters and pages a token listing.
type ListTokensParams struct {
	BusinessKey string // only tokens with this business key when set
	// Fingerprint, when set, keeps only tokens whose fingerprint, or the
	// one they had before the last fingerprint-key rotation, is this one.
	Fingerprint   []byte
	Limit         int       // 1–100
	StartingAfter uuid.UUID // the last id of the previous page, or uuid.Nil
}

// TokenPage is one page of masked tokens, newest first.
type TokenPage struct {
	Tokens  []Token
	HasMore bool
}

// DefaultCardHistoryRetention is how long a replaced card version is kept
// when VAULT_CARD_HISTORY_RETENTION does not say.
const DefaultCardHistoryRetention = 30 * 24 * time.Hour

// TokenVersion is a card a token held before an update replaced its number
// or expiry, as the API shows it: masked. Its ciphertexts stay sealed in
// the vault for the card-history retention.
type TokenVersion struct {
	ID          int64
	TokenID     uuid.UUID
	IIN         string
	LastFour    string
	PANLength   int
	Scheme      card.Scheme
	ExpiryMonth int
	ExpiryYear  int
	Fingerprint []byte
	ValidFrom   time.Time // when this card became the token's
	ReplacedAt  time.Time
}

// TokenVersionRecord is the JSON shape of a TokenVersion.
type TokenVersionRecord struct {
	ID                  int64  `json:"id"`
	Object              string `json:"object"`
	MaskedAccountNumber string `json:"masked_account_number"`
	Scheme              string `json:"scheme"`
	IIN                 string `json:"issuer_identification_number"`
	LastFour            string `json:"account_number_last_four"`
	Length              int    `json:"account_number_length"`
	ExpiryMonth         int    `json:"expiry_month"`
	ExpiryYear          int    `json:"expiry_year"`
	Fingerprint         string `json:"fingerprint"`
	ValidFrom           string `json:"valid_from"`
	ReplacedAt          string `json:"replaced_at"`
}

// Record returns v's JSON shape.
func (v TokenVersion) Record() TokenVersionRecord {
	return TokenVersionRecord{ID: v.ID, Object: "token_version",
		MaskedAccountNumber: Token{IIN: v.IIN, LastFour: v.LastFour, PANLength: v.PANLength}.MaskedAccountNumber(),
		Scheme:              string(v.Scheme), IIN: v.IIN, LastFour: v.LastFour, Length: v.PANLength,
		ExpiryMonth: v.ExpiryMonth, ExpiryYear: v.ExpiryYear,
		Fingerprint: base64.RawURLEncoding.EncodeToString(v.Fingerprint),
		ValidFrom:   Timestamp(v.ValidFrom), ReplacedAt: Timestamp(v.ReplacedAt)}
}
