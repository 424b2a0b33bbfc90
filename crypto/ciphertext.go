// Package crypto holds cardvault's cryptography, built only on Tink: the root
// key-encryption key (KEK), per-tenant keysets wrapped under it, the Sealer
// that encrypts card fields and the Fingerprinter that computes keyed
// fingerprints. It knows nothing about storage or the vault domain.
package crypto

import (
	"encoding/binary"
	"fmt"
	"io"
)

const (
	tinkPrefixLen     = 5    // 1 start byte + 4-byte big-endian key id
	tinkPrefixStartID = 0x01 // start byte of Tink's TINK output prefix
)

// Ciphertext is Tink AEAD ciphertext: 5-byte TINK prefix + nonce + sealed
// data + tag. Its String, GoString and Format methods never print the bytes,
// whatever the fmt verb.
type Ciphertext []byte

// KeyID returns the id of the keyset key that sealed c, read from its TINK
// prefix. It returns an error if c is shorter than the prefix or does not
// start with the TINK prefix byte 0x01.
func (c Ciphertext) KeyID() (uint32, error) {
	if len(c) < tinkPrefixLen {
		return 0, fmt.Errorf("crypto: ciphertext too short (%d bytes) for a TINK prefix", len(c))
	}
	if c[0] != tinkPrefixStartID {
		return 0, fmt.Errorf("crypto: ciphertext does not start with a TINK prefix")
	}
	return binary.BigEndian.Uint32(c[1:tinkPrefixLen]), nil
}

// String returns "Ciphertext(<n> bytes)"; it never returns the bytes.
func (c Ciphertext) String() string {
	return fmt.Sprintf("Ciphertext(%d bytes)", len(c))
}

// GoString returns the same as String, so %#v never prints the bytes.
func (c Ciphertext) GoString() string {
	return c.String()
}

// Format implements fmt.Formatter so that every verb, including %d, %o and
// %b which would otherwise print the bytes of a slice, writes String.
func (c Ciphertext) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, c.String())
}
