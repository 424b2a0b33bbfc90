package vaulttest

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// ErrKMSDown is what a SwitchableKEK answers while it is down.
var ErrKMSDown = errors.New("test KMS: unavailable")

// SwitchableKEK is a root KEK a test can make unavailable, like a KMS that
// stops answering; it counts the calls that reach it.
type SwitchableKEK struct {
	aead  tink.AEAD
	Down  atomic.Bool  // while true every call fails with ErrKMSDown
	Calls atomic.Int64 // calls made, up or down
}

// NewSwitchableKEK returns an up SwitchableKEK over a fresh in-memory key.
// It fails tb on error.
func NewSwitchableKEK(tb testing.TB) *SwitchableKEK {
	tb.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		tb.Fatalf("vaulttest: kek: %v", err)
	}
	a, err := aead.New(h)
	if err != nil {
		tb.Fatalf("vaulttest: kek: %v", err)
	}
	return &SwitchableKEK{aead: a}
}

// Encrypt encrypts with the key, or fails with ErrKMSDown while down.
func (k *SwitchableKEK) Encrypt(plaintext, ad []byte) ([]byte, error) {
	k.Calls.Add(1)
	if k.Down.Load() {
		return nil, ErrKMSDown
	}
	return k.aead.Encrypt(plaintext, ad)
}

// Decrypt decrypts with the key, or fails with ErrKMSDown while down.
func (k *SwitchableKEK) Decrypt(ciphertext, ad []byte) ([]byte, error) {
	k.Calls.Add(1)
	if k.Down.Load() {
		return nil, ErrKMSDown
	}
	return k.aead.Decrypt(ciphertext, ad)
}
