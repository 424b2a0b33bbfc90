package crypto

import (
	"fmt"
	"slices"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
)

// fingerprintLen is the length in bytes of every fingerprint.
const fingerprintLen = 32

// Fingerprinter computes keyed fingerprints (PRF) with a tenant fingerprint
// keyset (safe for concurrent use).
type Fingerprinter struct {
	set *prf.Set
}

// NewFingerprinter returns a Fingerprinter for the PRF keyset h. It returns
// an error if h is not a PRF keyset or its primary PRF cannot output 32
// bytes.
func NewFingerprinter(h *keyset.Handle) (*Fingerprinter, error) {
	if h == nil {
		return nil, fmt.Errorf("crypto: nil keyset handle")
	}
	set, err := prf.NewPRFSet(h)
	if err != nil {
		return nil, fmt.Errorf("crypto: new fingerprinter: %w", err)
	}
	if _, err := set.ComputePrimaryPRF(nil, fingerprintLen); err != nil {
		return nil, fmt.Errorf("crypto: new fingerprinter: primary PRF: %w", err)
	}
	return &Fingerprinter{set: set}, nil
}

// Sum returns the 32-byte output of the primary PRF on data, or an error if
// the PRF fails.
func (f *Fingerprinter) Sum(data []byte) ([]byte, error) {
	out, err := f.set.ComputePrimaryPRF(data, fingerprintLen)
	if err != nil {
		return nil, fmt.Errorf("crypto: fingerprint: %w", err)
	}
	return out, nil
}

// KeyID returns the id of the primary PRF key that Sum uses.
func (f *Fingerprinter) KeyID() uint32 {
	return f.set.PrimaryID
}

// SumWith returns the 32-byte output of the PRF of key keyID (primary or
// not) on data: during a rotation, what a fingerprint made before it
// looks like. It returns an error for a key the keyset does not hold.
func (f *Fingerprinter) SumWith(keyID uint32, data []byte) ([]byte, error) {
	p, ok := f.set.PRFs[keyID]
	if !ok {
		return nil, fmt.Errorf("crypto: fingerprint: no key %d", keyID)
	}
	out, err := p.ComputePRF(data, fingerprintLen)
	if err != nil {
		return nil, fmt.Errorf("crypto: fingerprint: %w", err)
	}
	return out, nil
}

// OtherKeyIDs returns the ids of the keyset's enabled keys besides the
// primary, in ascending order.
func (f *Fingerprinter) OtherKeyIDs() []uint32 {
	var out []uint32
	for id := range f.set.PRFs {
		if id != f.set.PrimaryID {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
