package crypto_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"

	"github.com/cardvault/cardvault/crypto"
)

func TestFingerprint(t *testing.T) {
	h := newFingerprintKeyset(t)
	f := newFingerprinter(t, h)
	first := sum(t, f, []byte(samplePAN))

	assert.Len(t, first, 32)
	assert.Equal(t, first, sum(t, f, []byte(samplePAN)), "same fingerprinter")
	assert.Equal(t, first, sum(t, newFingerprinter(t, h), []byte(samplePAN)), "same keyset")
	other := newFingerprinter(t, newFingerprintKeyset(t))
	assert.NotEqual(t, first, sum(t, other, []byte(samplePAN)), "other keyset")
	assert.NotEqual(t, first, sum(t, f, []byte(samplePAN[:15])), "other input")
}

func TestFingerprinterKeyID(t *testing.T) {
	h := newFingerprintKeyset(t)
	primary, err := h.Primary()
	require.NoError(t, err)
	assert.Equal(t, primary.KeyID(), newFingerprinter(t, h).KeyID())
}

func TestNewFingerprinterRejects(t *testing.T) {
	cmac, err := keyset.NewHandle(prf.AESCMACPRFKeyTemplate())
	require.NoError(t, err)
	tests := []struct {
		name string
		h    *keyset.Handle
	}{
		{"nil", nil},
		{"AEAD keyset", newDataKeyset(t)},
		{"PRF shorter than 32 bytes", cmac},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := crypto.NewFingerprinter(tt.h)
			require.Error(t, err)
			assert.Nil(t, f)
		})
	}
}
