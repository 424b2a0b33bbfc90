package crypto_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

const (
	tenantA = "0b6c5f0e-8a4b-4c1e-9d3f-2a7e5c1b9d40"
	tenantB = "7f3e2d1c-0b9a-4877-a655-4433221100ff"
	tokenA  = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
	tokenB  = "9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0"
)

func wrap(tb testing.TB, h *keyset.Handle, kek tink.AEAD, tenant string, p crypto.Purpose) []byte {
	tb.Helper()
	w, err := crypto.WrapKeyset(h, kek, tenant, p)
	require.NoError(tb, err)
	return w
}

func TestWrapUnwrapDataKeyset(t *testing.T) {
	kek := newLocalKEK(t)
	h := newDataKeyset(t)
	wrapped := wrap(t, h, kek, tenantA, crypto.PurposeData)
	assert.NotContains(t, string(wrapped), samplePAN)

	got, err := crypto.UnwrapKeyset(wrapped, kek, tenantA, crypto.PurposeData)
	require.NoError(t, err)

	ad := crypto.FieldAD(tenantA, tokenA, "number")
	c := seal(t, newSealer(t, h), []byte(samplePAN), ad)
	pt, err := newSealer(t, got).Open(c, ad)
	require.NoError(t, err)
	assert.Equal(t, samplePAN, string(pt))
}

func TestWrapUnwrapFingerprintKeyset(t *testing.T) {
	kek := newLocalKEK(t)
	h := newFingerprintKeyset(t)
	wrapped := wrap(t, h, kek, tenantA, crypto.PurposeFingerprint)

	got, err := crypto.UnwrapKeyset(wrapped, kek, tenantA, crypto.PurposeFingerprint)
	require.NoError(t, err)

	want := sum(t, newFingerprinter(t, h), []byte(samplePAN))
	assert.Equal(t, want, sum(t, newFingerprinter(t, got), []byte(samplePAN)))
}

func TestUnwrapKeysetFails(t *testing.T) {
	kek := newLocalKEK(t)
	wrapped := wrap(t, newDataKeyset(t), kek, tenantA, crypto.PurposeData)
	tampered := append([]byte(nil), wrapped...)
	tampered[len(tampered)-1] ^= 0x01
	tests := []struct {
		name    string
		wrapped []byte
		kek     tink.AEAD
		tenant  string
		purpose crypto.Purpose
	}{
		{"other tenant", wrapped, kek, tenantB, crypto.PurposeData},
		{"other purpose", wrapped, kek, tenantA, crypto.PurposeFingerprint},
		{"other KEK", wrapped, newLocalKEK(t), tenantA, crypto.PurposeData},
		{"tampered", tampered, kek, tenantA, crypto.PurposeData},
		{"truncated", wrapped[:len(wrapped)/2], kek, tenantA, crypto.PurposeData},
		{"empty", nil, kek, tenantA, crypto.PurposeData},
		{"empty tenant", wrapped, kek, "", crypto.PurposeData},
		{"unknown purpose", wrapped, kek, tenantA, crypto.Purpose("mac")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := crypto.UnwrapKeyset(tt.wrapped, tt.kek, tt.tenant, tt.purpose)
			require.Error(t, err)
			assert.Nil(t, h)
		})
	}
}

func TestWrapKeysetRejects(t *testing.T) {
	kek := newLocalKEK(t)
	tests := []struct {
		name    string
		h       *keyset.Handle
		tenant  string
		purpose crypto.Purpose
	}{
		{"PRF keyset as data", newFingerprintKeyset(t), tenantA, crypto.PurposeData},
		{"AEAD keyset as fingerprint", newDataKeyset(t), tenantA, crypto.PurposeFingerprint},
		{"empty tenant", newDataKeyset(t), "", crypto.PurposeData},
		{"unknown purpose", newDataKeyset(t), tenantA, crypto.Purpose("")},
		{"nil handle", nil, tenantA, crypto.PurposeData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := crypto.WrapKeyset(tt.h, kek, tt.tenant, tt.purpose)
			require.Error(t, err)
			assert.Nil(t, w)
		})
	}
}

func TestWrapKeysetIsRandomized(t *testing.T) {
	kek := newLocalKEK(t)
	h := newDataKeyset(t)
	assert.NotEqual(t, wrap(t, h, kek, tenantA, crypto.PurposeData), wrap(t, h, kek, tenantA, crypto.PurposeData))
}
