package vault

import (
	"encoding/base64"

	"github.com/google/uuid"
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
