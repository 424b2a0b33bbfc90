package crypto_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

// samplePAN is the only card number the tests use.
const samplePAN = "4242424242424242"

// newLocalKEK creates a local KEK file in a temp dir and opens it.
func newLocalKEK(tb testing.TB) tink.AEAD {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "kek.json")
	require.NoError(tb, crypto.CreateLocalKEK(path))
	kek, err := crypto.OpenKEK(context.Background(), "local://"+path)
	require.NoError(tb, err)
	return kek
}

func newDataKeyset(tb testing.TB) *keyset.Handle {
	tb.Helper()
	h, err := crypto.NewDataKeyset()
	require.NoError(tb, err)
	return h
}

func newFingerprintKeyset(tb testing.TB) *keyset.Handle {
	tb.Helper()
	h, err := crypto.NewFingerprintKeyset()
	require.NoError(tb, err)
	return h
}

func newSealer(tb testing.TB, h *keyset.Handle) *crypto.Sealer {
	tb.Helper()
	s, err := crypto.NewSealer(h)
	require.NoError(tb, err)
	return s
}

func newFingerprinter(tb testing.TB, h *keyset.Handle) *crypto.Fingerprinter {
	tb.Helper()
	f, err := crypto.NewFingerprinter(h)
	require.NoError(tb, err)
	return f
}

func seal(tb testing.TB, s *crypto.Sealer, plaintext, ad []byte) crypto.Ciphertext {
	tb.Helper()
	c, err := s.Seal(plaintext, ad)
	require.NoError(tb, err)
	return c
}

func sum(tb testing.TB, f *crypto.Fingerprinter, data []byte) []byte {
	tb.Helper()
	out, err := f.Sum(data)
	require.NoError(tb, err)
	return out
}
