package crypto_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/cardvault/cardvault/crypto"
)

func TestSealOpenRoundTrip(t *testing.T) {
	s := newSealer(t, newDataKeyset(t))
	ad := crypto.FieldAD(tenantA, tokenA, "number")
	c := seal(t, s, []byte(samplePAN), ad)
	assert.NotContains(t, string(c), samplePAN)

	pt, err := s.Open(c, ad)
	require.NoError(t, err)
	assert.Equal(t, samplePAN, string(pt))
}

func TestOpenFails(t *testing.T) {
	s := newSealer(t, newDataKeyset(t))
	ad := crypto.FieldAD(tenantA, tokenA, "number")
	c := seal(t, s, []byte(samplePAN), ad)
	tests := []struct {
		name   string
		sealer *crypto.Sealer
		c      crypto.Ciphertext
		ad     []byte
	}{
		{"other tenant", s, c, crypto.FieldAD(tenantB, tokenA, "number")},
		{"other token", s, c, crypto.FieldAD(tenantA, tokenB, "number")},
		{"other field", s, c, crypto.FieldAD(tenantA, tokenA, "exp")},
		{"nil AD", s, c, nil},
		{"tampered prefix", s, flip(c, 0), ad},
		{"tampered key id", s, flip(c, 4), ad},
		{"tampered nonce", s, flip(c, 5), ad},
		{"tampered body", s, flip(c, 5+12), ad},
		{"tampered tag", s, flip(c, len(c)-1), ad},
		{"truncated", s, c[:len(c)-1], ad},
		{"empty", s, nil, ad},
		{"unknown key", newSealer(t, newDataKeyset(t)), c, ad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.sealer.Open(tt.c, tt.ad)
			require.Error(t, err)
			assert.Nil(t, pt)
			assert.NotContains(t, err.Error(), samplePAN)
		})
	}
}

// flip returns a copy of c with one bit of byte i flipped.
func flip(c crypto.Ciphertext, i int) crypto.Ciphertext {
	out := append(crypto.Ciphertext(nil), c...)
	out[i] ^= 0x01
	return out
}

func TestCiphertextKeyIDIsPrimaryKeyID(t *testing.T) {
	s := newSealer(t, newDataKeyset(t))
	c := seal(t, s, []byte(samplePAN), crypto.FieldAD(tenantA, tokenA, "number"))
	id, err := c.KeyID()
	require.NoError(t, err)
	assert.Equal(t, s.PrimaryKeyID(), id)
	assert.NotZero(t, id)
}

func TestSealIsRandomized(t *testing.T) {
	s := newSealer(t, newDataKeyset(t))
	ad := crypto.FieldAD(tenantA, tokenA, "number")
	assert.NotEqual(t, seal(t, s, []byte(samplePAN), ad), seal(t, s, []byte(samplePAN), ad))
}

func TestNewSealerRejects(t *testing.T) {
	raw, err := keyset.NewHandle(aead.AES256GCMNoPrefixKeyTemplate())
	require.NoError(t, err)
	tests := []struct {
		name string
		h    *keyset.Handle
	}{
		{"nil", nil},
		{"PRF keyset", newFingerprintKeyset(t)},
		{"RAW output prefix", raw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := crypto.NewSealer(tt.h)
			require.Error(t, err)
			assert.Nil(t, s)
		})
	}
}

func TestFieldADUnambiguous(t *testing.T) {
	triples := [][3]string{
		{tenantA, tokenA, "number"},
		{tenantB, tokenA, "number"},
		{tenantA, tokenB, "number"},
		{tenantA, tokenA, "exp"},
		{tokenA, tenantA, "number"},
		{"a/b", "c", "d"},
		{"a", "b/c", "d"},
		{"a", "b", "c/d"},
		{"a", "", "bc"},
		{"a", "b", "c"},
		{"ab", "", "c"},
		{"", "ab", "c"},
		{"", "", ""},
	}
	seen := map[string][3]string{}
	for _, tr := range triples {
		ad := string(crypto.FieldAD(tr[0], tr[1], tr[2]))
		prev, dup := seen[ad]
		require.False(t, dup, "%q and %q give the same AD", prev, tr)
		seen[ad] = tr
	}
	assert.Equal(t, crypto.FieldAD(tenantA, tokenA, "number"), crypto.FieldAD(tenantA, tokenA, "number"))
}
