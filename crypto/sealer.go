package crypto

import (
	"encoding/binary"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// fieldADPrefix starts the associated data of every sealed field. It, and
// the encoding in FieldAD, must never change: existing ciphertexts would no
// longer open.
const fieldADPrefix = "cardvault/v1/field"

// Sealer seals and opens card fields with a tenant data keyset (safe for
// concurrent use).
type Sealer struct {
	aead      tink.AEAD
	primaryID uint32
}

// NewSealer returns a Sealer for the AEAD keyset h. It returns an error if h
// is not an AEAD keyset or its primary key has no TINK output prefix.
func NewSealer(h *keyset.Handle) (*Sealer, error) {
	primaryID, err := tinkPrimaryID(h)
	if err != nil {
		return nil, err
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("crypto: new sealer: %w", err)
	}
	return &Sealer{aead: a, primaryID: primaryID}, nil
}

// Seal returns plaintext encrypted under the primary key and bound to
// associatedData, or an error if encryption fails.
func (s *Sealer) Seal(plaintext, associatedData []byte) (Ciphertext, error) {
	ct, err := s.aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("crypto: seal: %w", err)
	}
	return Ciphertext(ct), nil
}

// Open returns the plaintext of c. It returns an error if c was tampered
// with, associatedData differs from the one used to seal, or c's key is not
// in the keyset; the error never contains plaintext.
func (s *Sealer) Open(c Ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := s.aead.Decrypt(c, associatedData)
	if err != nil {
		return nil, fmt.Errorf("crypto: open %v: %w", c, err)
	}
	return pt, nil
}

// PrimaryKeyID returns the id of the key Seal uses, which is also the KeyID
// of every Ciphertext it returns.
func (s *Sealer) PrimaryKeyID() uint32 {
	return s.primaryID
}

// FieldAD returns the associated data that binds a sealed field to its row:
// a fixed prefix, then tenantID, tokenID and field, each preceded by its
// 4-byte big-endian length, so different triples always differ.
func FieldAD(tenantID, tokenID, field string) []byte {
	parts := [...]string{tenantID, tokenID, field}
	n := len(fieldADPrefix)
	for _, p := range parts {
		n += 4 + len(p)
	}
	ad := make([]byte, 0, n)
	ad = append(ad, fieldADPrefix...)
	for _, p := range parts {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(p)))
		ad = append(ad, p...)
	}
	return ad
}

// tinkPrimaryID returns the id of h's primary key, or an error if h has no
// primary or its output prefix is not TINK (0x01 + key id).
func tinkPrimaryID(h *keyset.Handle) (uint32, error) {
	if h == nil {
		return 0, fmt.Errorf("crypto: nil keyset handle")
	}
	primary, err := h.Primary()
	if err != nil {
		return 0, fmt.Errorf("crypto: keyset primary: %w", err)
	}
	k, ok := primary.Key().(interface{ OutputPrefix() []byte })
	if !ok {
		return 0, fmt.Errorf("crypto: keyset primary is not an AEAD key")
	}
	if p := k.OutputPrefix(); len(p) != tinkPrefixLen || p[0] != tinkPrefixStartID {
		return 0, fmt.Errorf("crypto: keyset primary has no TINK output prefix")
	}
	return primary.KeyID(), nil
}
