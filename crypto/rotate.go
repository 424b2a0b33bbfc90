package crypto

import (
	"fmt"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
)

// KeyState is the lifecycle state of one key of a keyset.
type KeyState string

// The key states, in lifecycle order.
const (
	KeyPrimary  KeyState = "primary"  // encrypts new data and decrypts
	KeyActive   KeyState = "active"   // decrypts only
	KeyDisabled KeyState = "disabled" // neither; can be destroyed
)

// KeyInfo describes one key of a keyset, without its material.
type KeyInfo struct {
	ID    uint32
	State KeyState
}

// Keys lists the keys of h in keyset order.
func Keys(h *keyset.Handle) []KeyInfo {
	info := h.KeysetInfo()
	out := make([]KeyInfo, 0, len(info.GetKeyInfo()))
	for _, k := range info.GetKeyInfo() {
		state := KeyActive
		switch {
		case k.GetKeyId() == info.GetPrimaryKeyId():
			state = KeyPrimary
		case k.GetStatus().String() != "ENABLED":
			state = KeyDisabled
		}
		out = append(out, KeyInfo{ID: k.GetKeyId(), State: state})
	}
	return out
}

// AddDataKey returns h with a fresh AES-256-GCM key added, enabled but not
// primary (the first step of Tink's rotation order), and the new key's id.
func AddDataKey(h *keyset.Handle) (*keyset.Handle, uint32, error) {
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, 0, fmt.Errorf("crypto: add key: %w", err)
	}
	out, err := m.Handle()
	return out, id, err
}

// AddFingerprintKey returns h, a fingerprint (PRF) keyset, with a fresh
// HMAC-SHA256 PRF key added, enabled but not primary, and the new key's id.
func AddFingerprintKey(h *keyset.Handle) (*keyset.Handle, uint32, error) {
	m := keyset.NewManagerFromHandle(h)
	id, err := m.Add(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, 0, fmt.Errorf("crypto: add fingerprint key: %w", err)
	}
	out, err := m.Handle()
	return out, id, err
}

// PromoteKey returns h with keyID as its primary. It returns an error for an
// unknown or disabled key.
func PromoteKey(h *keyset.Handle, keyID uint32) (*keyset.Handle, error) {
	m := keyset.NewManagerFromHandle(h)
	if err := m.SetPrimary(keyID); err != nil {
		return nil, fmt.Errorf("crypto: promote key %d: %w", keyID, err)
	}
	return m.Handle()
}

// DisableKey returns h with keyID disabled: it no longer encrypts or
// decrypts. It returns an error for the primary or an unknown key.
func DisableKey(h *keyset.Handle, keyID uint32) (*keyset.Handle, error) {
	m := keyset.NewManagerFromHandle(h)
	if err := m.Disable(keyID); err != nil {
		return nil, fmt.Errorf("crypto: disable key %d: %w", keyID, err)
	}
	return m.Handle()
}

// DestroyKey returns h without keyID's key material. It returns an error
// unless the key is disabled first.
func DestroyKey(h *keyset.Handle, keyID uint32) (*keyset.Handle, error) {
	for _, k := range Keys(h) {
		if k.ID == keyID && k.State != KeyDisabled {
			return nil, fmt.Errorf("crypto: key %d must be disabled before it is destroyed", keyID)
		}
	}
	m := keyset.NewManagerFromHandle(h)
	if err := m.Delete(keyID); err != nil {
		return nil, fmt.Errorf("crypto: destroy key %d: %w", keyID, err)
	}
	return m.Handle()
}
