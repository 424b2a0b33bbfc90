package crypto_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/api/option"

	"github.com/cardvault/cardvault/crypto"
)

// gcpKeyName returns the Cloud KMS CryptoKey resource name the GCP fake uses
// for a key name.
func gcpKeyName(name string) string {
	return "projects/cardvault-test/locations/global/keyRings/cardvault/cryptoKeys/" + name
}

var gcpCryptoKeyRe = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$`)

// gcpFault makes the GCP fake corrupt its answers, to check that Tink's
// integrity checks on the REST path really run.
type gcpFault int

const (
	gcpNoFault               gcpFault = iota
	gcpUnverifiedPlaintext            // encrypt: verifiedPlaintextCrc32c false
	gcpUnverifiedAAD                  // encrypt: verifiedAdditionalAuthenticatedDataCrc32c false
	gcpBadCiphertextChecksum          // encrypt: ciphertextCrc32c does not match
	gcpBadPlaintextChecksum           // decrypt: plaintextCrc32c does not match
)

// gcpInt64 is a proto3-JSON int64: a JSON string (or number) of digits.
type gcpInt64 = *json.Number

// gcpRequest is the union of the Cloud KMS v1 REST EncryptRequest and
// DecryptRequest fields; bytes are base64 (standard or URL alphabet).
type gcpRequest struct {
	Plaintext                         string   `json:"plaintext"`
	Ciphertext                        string   `json:"ciphertext"`
	AdditionalAuthenticatedData       string   `json:"additionalAuthenticatedData"`
	PlaintextCrc32c                   gcpInt64 `json:"plaintextCrc32c"`
	CiphertextCrc32c                  gcpInt64 `json:"ciphertextCrc32c"`
	AdditionalAuthenticatedDataCrc32c gcpInt64 `json:"additionalAuthenticatedDataCrc32c"`
}

type gcpEncryptResponse struct {
	Name                                      string `json:"name"`
	Ciphertext                                string `json:"ciphertext"`
	CiphertextCrc32c                          int64  `json:"ciphertextCrc32c,string"`
	VerifiedPlaintextCrc32c                   bool   `json:"verifiedPlaintextCrc32c"`
	VerifiedAdditionalAuthenticatedDataCrc32c bool   `json:"verifiedAdditionalAuthenticatedDataCrc32c"`
	ProtectionLevel                           string `json:"protectionLevel"`
}

type gcpDecryptResponse struct {
	Plaintext       string `json:"plaintext"`
	PlaintextCrc32c int64  `json:"plaintextCrc32c,string"`
	UsedPrimary     bool   `json:"usedPrimary"`
	ProtectionLevel string `json:"protectionLevel"`
}

// fakeGCPKMS serves the Cloud KMS v1 REST methods
// POST /v1/{cryptoKey}:encrypt and :decrypt with real AES-GCM per CryptoKey
// name and additionalAuthenticatedData as associated data. Like Cloud KMS it
// verifies the request CRC32C checksums it is sent (400 on mismatch), says
// which it verified, checksums its answers, and uses Google's JSON error
// format: 404 NOT_FOUND for an unknown key, 400 INVALID_ARGUMENT when
// decryption fails.
type fakeGCPKMS struct {
	keys *fakeKeyring

	mu       sync.Mutex
	fault    gcpFault
	requests []gcpRequest
}

func newFakeGCPKMS(tb testing.TB) *fakeGCPKMS {
	tb.Helper()
	return &fakeGCPKMS{keys: newFakeKeyring(tb, gcpKeyName(fakeKEKName), gcpKeyName(otherKEKName))}
}

func (f *fakeGCPKMS) setFault(fault gcpFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

func (f *fakeGCPKMS) lastRequest() gcpRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func (f *fakeGCPKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/"), ":")
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1/") || !ok ||
		(method != "encrypt" && method != "decrypt") {
		writeGCPError(w, http.StatusNotFound, "NOT_FOUND", "no such method "+r.Method+" "+r.URL.Path)
		return
	}
	if !gcpCryptoKeyRe.MatchString(name) {
		writeGCPError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Resource name ["+name+"] does not match any known type")
		return
	}
	var req gcpRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeGCPError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	fault := f.fault
	f.mu.Unlock()

	aad, aadChecked, err := gcpField("additional_authenticated_data", req.AdditionalAuthenticatedData, req.AdditionalAuthenticatedDataCrc32c)
	if err != nil {
		writeGCPError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if method == "encrypt" {
		f.encrypt(w, name, req, aad, aadChecked, fault)
	} else {
		f.decrypt(w, name, req, aad, fault)
	}
}

func (f *fakeGCPKMS) encrypt(w http.ResponseWriter, name string, req gcpRequest, aad []byte, aadChecked bool, fault gcpFault) {
	pt, ptChecked, err := gcpField("plaintext", req.Plaintext, req.PlaintextCrc32c)
	if err != nil {
		writeGCPError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	ct, err := f.keys.seal(name, pt, aad)
	if err != nil {
		writeGCPError(w, http.StatusNotFound, "NOT_FOUND", gcpNotFound(name))
		return
	}
	resp := gcpEncryptResponse{
		Name:             name + "/cryptoKeyVersions/1",
		Ciphertext:       base64.StdEncoding.EncodeToString(ct),
		CiphertextCrc32c: crc32c(ct),
		ProtectionLevel:  "SOFTWARE",
	}
	resp.VerifiedPlaintextCrc32c = ptChecked && fault != gcpUnverifiedPlaintext
	resp.VerifiedAdditionalAuthenticatedDataCrc32c = aadChecked && fault != gcpUnverifiedAAD
	if fault == gcpBadCiphertextChecksum {
		resp.CiphertextCrc32c++
	}
	writeGCPJSON(w, resp)
}

func (f *fakeGCPKMS) decrypt(w http.ResponseWriter, name string, req gcpRequest, aad []byte, fault gcpFault) {
	ct, _, err := gcpField("ciphertext", req.Ciphertext, req.CiphertextCrc32c)
	if err != nil {
		writeGCPError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	pt, err := f.keys.open(name, ct, aad)
	switch {
	case errors.Is(err, errFakeKeyNotFound):
		writeGCPError(w, http.StatusNotFound, "NOT_FOUND", gcpNotFound(name))
		return
	case err != nil:
		writeGCPError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
		return
	}
	resp := gcpDecryptResponse{
		Plaintext:       base64.StdEncoding.EncodeToString(pt),
		PlaintextCrc32c: crc32c(pt),
		UsedPrimary:     true,
		ProtectionLevel: "SOFTWARE",
	}
	if fault == gcpBadPlaintextChecksum {
		resp.PlaintextCrc32c++
	}
	writeGCPJSON(w, resp)
}

// gcpField decodes a base64 bytes field and verifies its CRC32C checksum if
// the request has one; checked reports whether it had.
func gcpField(field, b64 string, sum gcpInt64) (data []byte, checked bool, err error) {
	data, err = base64.RawStdEncoding.DecodeString(
		strings.TrimRight(strings.NewReplacer("-", "+", "_", "/").Replace(b64), "="))
	if err != nil {
		return nil, false, err
	}
	if sum == nil {
		return data, false, nil
	}
	want, err := strconv.ParseInt(string(*sum), 10, 64)
	if err != nil || want != crc32c(data) {
		return nil, false, &gcpChecksumError{field}
	}
	return data, true, nil
}

type gcpChecksumError struct{ field string }

func (e *gcpChecksumError) Error() string {
	return "The checksum in field " + e.field + "_crc32c did not match the data in field " + e.field + "."
}

func crc32c(b []byte) int64 {
	return int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func gcpNotFound(name string) string {
	return name + " not found."
}

func writeGCPJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeGCPError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{"code": code, "message": msg, "status": status},
	})
}

// startGCPKMS serves fake over HTTPS on loopback and returns the options
// that point Google's API client at it.
func startGCPKMS(t *testing.T, fake *fakeGCPKMS) []option.ClientOption {
	t.Helper()
	srv := httptest.NewTLSServer(fake)
	t.Cleanup(srv.Close)
	return []option.ClientOption{option.WithEndpoint(srv.URL + "/"), option.WithHTTPClient(srv.Client())}
}

func openGCPKEK(t *testing.T, opts []option.ClientOption, name string) tink.AEAD {
	t.Helper()
	kek, err := crypto.OpenKEK(context.Background(), "gcp-kms://"+gcpKeyName(name), crypto.WithGCPOptions(opts...))
	require.NoError(t, err)
	return kek
}

// TestGCPKMSKEK runs Tink's gcpkms REST AEAD (the transport OpenKEK uses)
// against the fake Cloud KMS REST API: wrap/unwrap, associated data, call
// counts, wrong keys.
func TestGCPKMSKEK(t *testing.T) {
	fake := newFakeGCPKMS(t)
	opts := startGCPKMS(t, fake)
	testRemoteKEK(t, remoteKEK{
		keys: fake.keys,
		open: func(t *testing.T, name string) tink.AEAD { return openGCPKEK(t, opts, name) },
		errs: kmsErrs{BadAD: "Error 400: Decryption failed", OtherKey: "Error 400: Decryption failed", NotFound: "Error 404"},
	})
}

// TestGCPKMSKEKWireFormat pins what Tink sends: CRC32C checksums of every
// input (the fake verified them), the associated data's among them. The
// fake also only accepts a CryptoKey name (not a version) in the path.
func TestGCPKMSKEKWireFormat(t *testing.T) {
	fake := newFakeGCPKMS(t)
	kek := openGCPKEK(t, startGCPKMS(t, fake), fakeKEKName)
	ad := []byte("cardvault/v1/data/" + tenantA)

	ct, err := kek.Encrypt([]byte(samplePAN), ad)
	require.NoError(t, err)
	req := fake.lastRequest()
	require.NotNil(t, req.PlaintextCrc32c)
	require.NotNil(t, req.AdditionalAuthenticatedDataCrc32c)
	assert.Equal(t, strconv.FormatInt(crc32c(ad), 10), req.AdditionalAuthenticatedDataCrc32c.String())

	_, err = kek.Decrypt(ct, ad)
	require.NoError(t, err)
	req = fake.lastRequest()
	require.NotNil(t, req.CiphertextCrc32c)
	assert.Equal(t, strconv.FormatInt(crc32c(ct), 10), req.CiphertextCrc32c.String())
}

// TestGCPKMSKEKIntegrityChecks makes the fake corrupt its answers and checks
// that Tink's REST AEAD refuses each, as Cloud KMS's data integrity
// guidelines require.
func TestGCPKMSKEKIntegrityChecks(t *testing.T) {
	fake := newFakeGCPKMS(t)
	kek := openGCPKEK(t, startGCPKMS(t, fake), fakeKEKName)
	ad := []byte("ad")
	ct, err := kek.Encrypt([]byte(samplePAN), ad)
	require.NoError(t, err)

	encrypt := func() error { _, err := kek.Encrypt([]byte(samplePAN), ad); return err }
	decrypt := func() error { _, err := kek.Decrypt(ct, ad); return err }
	tests := []struct {
		name  string
		fault gcpFault
		call  func() error
		want  string
	}{
		{"unverified plaintext", gcpUnverifiedPlaintext, encrypt, "checksum field plaintext_crc32c"},
		{"unverified associated data", gcpUnverifiedAAD, encrypt, "checksum field additional_authenticated_data_crc32c"},
		{"corrupt ciphertext checksum", gcpBadCiphertextChecksum, encrypt, "field ciphertext_crc32c did not match"},
		{"corrupt plaintext checksum", gcpBadPlaintextChecksum, decrypt, "field plaintext_crc32c did not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.setFault(tt.fault)
			t.Cleanup(func() { fake.setFault(gcpNoFault) })
			err := tt.call()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestGCPKMSKEKErrors checks that Cloud KMS errors reach the caller with
// their HTTP status.
func TestGCPKMSKEKErrors(t *testing.T) {
	fake := newFakeGCPKMS(t)
	opts := startGCPKMS(t, fake)
	kek := openGCPKEK(t, opts, fakeKEKName)
	ct, err := kek.Encrypt([]byte(samplePAN), []byte("ad"))
	require.NoError(t, err)

	missing, other := openGCPKEK(t, opts, missingKEKName), openGCPKEK(t, opts, otherKEKName)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"missing key", func() error { _, err := missing.Encrypt([]byte(samplePAN), nil); return err }, "404"},
		{"other key", func() error { _, err := other.Decrypt(ct, []byte("ad")); return err }, "400"},
		{"other associated data", func() error { _, err := kek.Decrypt(ct, []byte("other")); return err }, "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
