package crypto_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

// Key names every fake KMS knows (fakeKEKName, otherKEKName) or does not
// know (missingKEKName). Each backend test maps them to its own key URIs.
const (
	fakeKEKName    = "cardvault-kek"
	otherKEKName   = "other-kek"
	missingKEKName = "no-such-kek"
)

// tokensPerLoad is how many card tokens the tests seal, open or fingerprint
// with one unwrapped keyset while checking that the KEK is not called.
const tokensPerLoad = 50

var (
	errFakeKeyNotFound = errors.New("fake kms: key not found")
	errFakeDecrypt     = errors.New("fake kms: decryption failed")
)

// kmsCalls counts the encrypt and decrypt calls that reached a fake KMS.
type kmsCalls struct {
	Encrypts, Decrypts int
}

// fakeKeyring is the key store behind every fake KMS: a real AES-256-GCM key
// per key name, and a count of the encrypt and decrypt calls that reached
// it (including failing ones). It is safe for concurrent use.
type fakeKeyring struct {
	mu    sync.Mutex
	keys  map[string]cipher.AEAD
	calls kmsCalls
}

// newFakeKeyring returns a keyring with a fresh random key for each name.
func newFakeKeyring(tb testing.TB, names ...string) *fakeKeyring {
	tb.Helper()
	k := &fakeKeyring{keys: make(map[string]cipher.AEAD, len(names))}
	for _, name := range names {
		raw := make([]byte, 32)
		_, err := rand.Read(raw)
		require.NoError(tb, err)
		block, err := aes.NewCipher(raw)
		require.NoError(tb, err)
		gcm, err := cipher.NewGCM(block)
		require.NoError(tb, err)
		k.keys[name] = gcm
	}
	return k
}

// seal counts an encrypt call and returns nonce||ciphertext of plaintext
// under the key name, bound to ad; errFakeKeyNotFound for an unknown name.
func (k *fakeKeyring) seal(name string, plaintext, ad []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls.Encrypts++
	gcm, ok := k.keys[name]
	if !ok {
		return nil, errFakeKeyNotFound
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plaintext)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plaintext, ad), nil
}

// open counts a decrypt call and returns the plaintext of sealed under the
// key name if ad matches; errFakeKeyNotFound or errFakeDecrypt otherwise.
func (k *fakeKeyring) open(name string, sealed, ad []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls.Decrypts++
	gcm, ok := k.keys[name]
	if !ok {
		return nil, errFakeKeyNotFound
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errFakeDecrypt
	}
	pt, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], ad)
	if err != nil {
		return nil, errFakeDecrypt
	}
	return pt, nil
}

func (k *fakeKeyring) count() kmsCalls {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// expectCalls runs f and asserts that it made exactly want calls to k.
func (k *fakeKeyring) expectCalls(t *testing.T, want kmsCalls, f func()) {
	t.Helper()
	before := k.count()
	f()
	after := k.count()
	got := kmsCalls{Encrypts: after.Encrypts - before.Encrypts, Decrypts: after.Decrypts - before.Decrypts}
	assert.Equal(t, want, got, "calls to the KMS")
}

// remoteKEK is one KMS backend under test: keys is the keyring of its fake,
// which holds fakeKEKName and otherKEKName, and open opens the KEK for a key
// name with crypto.OpenKEK, so the real Tink extension talks to the fake.
// errs says how the KMS reports failures, so a test knows that an operation
// failed at the KMS for the right reason.
type remoteKEK struct {
	keys *fakeKeyring
	open func(t *testing.T, keyName string) tink.AEAD
	errs kmsErrs
}

// kmsErrs are substrings of a KMS's errors: when the associated data does
// not match, when decrypting under another key, and for a missing key.
type kmsErrs struct {
	BadAD, OtherKey, NotFound string
}

// testRemoteKEK runs the checks every KMS backend must pass.
func testRemoteKEK(t *testing.T, r remoteKEK) {
	t.Helper()
	var kek tink.AEAD
	r.keys.expectCalls(t, kmsCalls{}, func() { kek = r.open(t, fakeKEKName) })

	t.Run("associated data", func(t *testing.T) { testKEKAssociatedData(t, r, kek) })
	t.Run("one KEK call per keyset load", func(t *testing.T) { testKEKCallsPerLoad(t, r.keys, kek) })
	t.Run("unwrap with another binding fails", func(t *testing.T) { testKEKBinding(t, r, kek) })
	t.Run("wrong key name fails", func(t *testing.T) { testKEKWrongKey(t, r, kek) })
}

// testKEKAssociatedData checks that the KMS round-trips under the right
// associated data and refuses other associated data or a tampered ciphertext.
func testKEKAssociatedData(t *testing.T, r remoteKEK, kek tink.AEAD) {
	t.Helper()
	keys := r.keys
	tests := []struct {
		name string
		ad   []byte
	}{
		{"empty", nil},
		{"keyset binding", []byte("cardvault/v1/data/" + tenantA)},
		{"binary", []byte{0x00, 0x01, 0xfe, 0xff, '/', 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plaintext := []byte(samplePAN)
			var ct []byte
			keys.expectCalls(t, kmsCalls{Encrypts: 1}, func() {
				var err error
				ct, err = kek.Encrypt(plaintext, tt.ad)
				require.NoError(t, err)
			})
			assert.NotContains(t, string(ct), samplePAN)

			keys.expectCalls(t, kmsCalls{Decrypts: 1}, func() {
				got, err := kek.Decrypt(ct, tt.ad)
				require.NoError(t, err)
				assert.Equal(t, plaintext, got)
			})

			tampered := append([]byte(nil), ct...)
			tampered[len(tampered)/2] ^= 0x01
			wrongAD := [][]byte{append(append([]byte(nil), tt.ad...), 'x')}
			if len(tt.ad) > 0 {
				wrongAD = append(wrongAD, nil)
			}
			for _, ad := range wrongAD {
				_, err := kek.Decrypt(ct, ad)
				assert.ErrorContains(t, err, r.errs.BadAD, "decrypt with associated data %q", ad)
			}
			_, err := kek.Decrypt(tampered, tt.ad)
			assert.Error(t, err, "decrypt tampered ciphertext")
		})
	}
}

// testKEKCallsPerLoad wraps each kind of tenant keyset and unwraps it twice,
// checking that wrapping and each unwrap call the KMS exactly once and that
// using the unwrapped keyset for many tokens never calls it.
func testKEKCallsPerLoad(t *testing.T, keys *fakeKeyring, kek tink.AEAD) {
	t.Helper()
	tests := []struct {
		purpose crypto.Purpose
		newKS   func(testing.TB) *keyset.Handle
		use     func(t *testing.T, orig, loaded *keyset.Handle)
	}{
		{crypto.PurposeData, newDataKeyset, useDataKeyset},
		{crypto.PurposeFingerprint, newFingerprintKeyset, useFingerprintKeyset},
	}
	for _, tt := range tests {
		t.Run(string(tt.purpose), func(t *testing.T) {
			h := tt.newKS(t)
			var wrapped []byte
			keys.expectCalls(t, kmsCalls{Encrypts: 1}, func() { wrapped = wrap(t, h, kek, tenantA, tt.purpose) })

			for load := 1; load <= 2; load++ {
				var loaded *keyset.Handle
				keys.expectCalls(t, kmsCalls{Decrypts: 1}, func() {
					var err error
					loaded, err = crypto.UnwrapKeyset(wrapped, kek, tenantA, tt.purpose)
					require.NoError(t, err, "load %d", load)
				})
				keys.expectCalls(t, kmsCalls{}, func() { tt.use(t, h, loaded) })
			}
		})
	}
}

// useDataKeyset seals and opens a card number for tokensPerLoad tokens with
// loaded, and opens with loaded what orig sealed.
func useDataKeyset(t *testing.T, orig, loaded *keyset.Handle) {
	t.Helper()
	origSealer, sealer := newSealer(t, orig), newSealer(t, loaded)
	for i := range tokensPerLoad {
		ad := crypto.FieldAD(tenantA, fmt.Sprintf("token-%03d", i), "number")
		for _, c := range []crypto.Ciphertext{seal(t, sealer, []byte(samplePAN), ad), seal(t, origSealer, []byte(samplePAN), ad)} {
			pt, err := sealer.Open(c, ad)
			require.NoError(t, err)
			require.Equal(t, samplePAN, string(pt))
		}
	}
}

// useFingerprintKeyset fingerprints tokensPerLoad card numbers with loaded
// and checks they match orig's.
func useFingerprintKeyset(t *testing.T, orig, loaded *keyset.Handle) {
	t.Helper()
	origFP, fp := newFingerprinter(t, orig), newFingerprinter(t, loaded)
	for i := range tokensPerLoad {
		pan := []byte(fmt.Sprintf("%s%03d", samplePAN[:13], i))
		require.Equal(t, sum(t, origFP, pan), sum(t, fp, pan))
	}
}

// testKEKBinding checks that a wrapped keyset does not unwrap for another
// tenant or purpose: the KMS itself rejects the associated data.
func testKEKBinding(t *testing.T, r remoteKEK, kek tink.AEAD) {
	t.Helper()
	keys := r.keys
	var wrapped []byte
	keys.expectCalls(t, kmsCalls{Encrypts: 1}, func() {
		wrapped = wrap(t, newDataKeyset(t), kek, tenantA, crypto.PurposeData)
	})
	tests := []struct {
		name    string
		tenant  string
		purpose crypto.Purpose
	}{
		{"other tenant", tenantB, crypto.PurposeData},
		{"other purpose", tenantA, crypto.PurposeFingerprint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys.expectCalls(t, kmsCalls{Decrypts: 1}, func() {
				h, err := crypto.UnwrapKeyset(wrapped, kek, tt.tenant, tt.purpose)
				require.ErrorContains(t, err, r.errs.BadAD)
				assert.Nil(t, h)
			})
		})
	}
}

// testKEKWrongKey checks that a KEK naming another key cannot unwrap, and
// that a KEK naming a missing key can neither wrap nor unwrap.
func testKEKWrongKey(t *testing.T, r remoteKEK, kek tink.AEAD) {
	t.Helper()
	var wrapped []byte
	r.keys.expectCalls(t, kmsCalls{Encrypts: 1}, func() {
		wrapped = wrap(t, newDataKeyset(t), kek, tenantA, crypto.PurposeData)
	})
	tests := []struct {
		name               string
		key                string
		unwrapErr, wrapErr string // wrapErr "" if wrapping works
	}{
		{"other key", otherKEKName, r.errs.OtherKey, ""},
		{"missing key", missingKEKName, r.errs.NotFound, r.errs.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrong := r.open(t, tt.key)
			r.keys.expectCalls(t, kmsCalls{Decrypts: 1}, func() {
				h, err := crypto.UnwrapKeyset(wrapped, wrong, tenantA, crypto.PurposeData)
				require.ErrorContains(t, err, tt.unwrapErr)
				assert.Nil(t, h)
			})
			r.keys.expectCalls(t, kmsCalls{Encrypts: 1}, func() {
				_, err := crypto.WrapKeyset(newDataKeyset(t), wrong, tenantA, crypto.PurposeData)
				if tt.wrapErr != "" {
					require.ErrorContains(t, err, tt.wrapErr)
				} else {
					require.NoError(t, err)
				}
			})
		})
	}
}
