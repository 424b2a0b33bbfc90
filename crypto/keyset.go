package crypto

import (
	"bytes"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Purpose names what a tenant keyset is for; it is bound into the associated
// data of the wrapped keyset so one purpose cannot be unwrapped as another.
type Purpose string

// The purposes of tenant keysets.
const (
	PurposeData        Purpose = "data"        // AES-256-GCM keyset that seals card fields
	PurposeFingerprint Purpose = "fingerprint" // HMAC-SHA256 PRF keyset for fingerprints
)

// keysetADPrefix starts the associated data of every wrapped keyset. It must
// never change: existing wrapped keysets would no longer unwrap.
const keysetADPrefix = "cardvault/v1/"

// NewDataKeyset returns a fresh AES-256-GCM keyset with TINK output prefix,
// or an error if Tink cannot generate it.
func NewDataKeyset() (*keyset.Handle, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("crypto: new data keyset: %w", err)
	}
	return h, nil
}

// NewFingerprintKeyset returns a fresh HMAC-SHA256 PRF keyset, or an error if
// Tink cannot generate it.
func NewFingerprintKeyset() (*keyset.Handle, error) {
	h, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("crypto: new fingerprint keyset: %w", err)
	}
	return h, nil
}

// WrapKeyset returns h encrypted under kek in Tink's binary EncryptedKeyset
// format, with associated data binding tenantID and purpose. It returns an
// error if tenantID is empty, purpose is unknown, h does not fit purpose, or
// the KEK fails.
func WrapKeyset(h *keyset.Handle, kek tink.AEAD, tenantID string, purpose Purpose) ([]byte, error) {
	ad, err := keysetAD(tenantID, purpose)
	if err != nil {
		return nil, err
	}
	if err := checkKeysetPurpose(h, purpose); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), kek, ad); err != nil {
		return nil, fmt.Errorf("crypto: wrap %s keyset: %w", purpose, err)
	}
	return buf.Bytes(), nil
}

// UnwrapKeyset returns the keyset that WrapKeyset wrapped under kek for the
// same tenantID and purpose. It returns an error if tenantID is empty,
// purpose is unknown, wrapped is malformed, or decryption fails (another KEK,
// tenant or purpose, or tampered bytes).
func UnwrapKeyset(wrapped []byte, kek tink.AEAD, tenantID string, purpose Purpose) (*keyset.Handle, error) {
	ad, err := keysetAD(tenantID, purpose)
	if err != nil {
		return nil, err
	}
	r := keyset.NewBinaryReader(bytes.NewReader(wrapped))
	h, err := keyset.ReadWithAssociatedData(r, kek, ad)
	if err != nil {
		return nil, fmt.Errorf("crypto: unwrap %s keyset: %w", purpose, err)
	}
	return h, nil
}

// keysetAD returns the associated data for a wrapped keyset. Purpose comes
// from a fixed set without "/", so the encoding is unambiguous.
func keysetAD(tenantID string, purpose Purpose) ([]byte, error) {
	if tenantID == "" {
		return nil, fmt.Errorf("crypto: empty tenant id")
	}
	if !purpose.valid() {
		return nil, fmt.Errorf("crypto: unknown keyset purpose %q", string(purpose))
	}
	return []byte(keysetADPrefix + string(purpose) + "/" + tenantID), nil
}

func (p Purpose) valid() bool {
	return p == PurposeData || p == PurposeFingerprint
}

// checkKeysetPurpose returns an error unless Tink can build the primitive
// that purpose needs from h, so a PRF keyset is never wrapped as data.
func checkKeysetPurpose(h *keyset.Handle, purpose Purpose) error {
	var err error
	switch purpose {
	case PurposeData:
		_, err = NewSealer(h)
	case PurposeFingerprint:
		_, err = NewFingerprinter(h)
	}
	if err != nil {
		return fmt.Errorf("crypto: keyset does not fit purpose %s: %w", purpose, err)
	}
	return nil
}
