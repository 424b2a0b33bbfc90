package crypto_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go-awskms/v3/integration/awskms"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

const (
	awsRegion    = "us-east-1"
	awsAccessKey = "AKIDCARDVAULTFAKE"
)

// awsKeyARN returns the ARN the AWS fakes use for a key name.
func awsKeyARN(name string) string {
	return "arn:aws:kms:" + awsRegion + ":111122223333:key/" + name
}

// fakeAWSKMS implements awskms.KMSAPI (the Encrypt and Decrypt methods of
// *kms.Client) with real AES-GCM per key ARN. Like AWS KMS, it binds the
// encryption context to the ciphertext, embeds the key in the ciphertext
// blob, and answers with the SDK's own exception types: NotFoundException
// for an unknown key, IncorrectKeyException when Decrypt names another key
// than the blob's, InvalidCiphertextException when the context or blob is
// wrong. It also serves the KMS JSON wire protocol (see ServeHTTP).
type fakeAWSKMS struct {
	keys *fakeKeyring

	mu       sync.Mutex
	contexts []map[string]string // EncryptionContext of each call, in order
	auth     []string            // Authorization header of each HTTP request
}

var _ awskms.KMSAPI = (*fakeAWSKMS)(nil)

func newFakeAWSKMS(tb testing.TB) *fakeAWSKMS {
	tb.Helper()
	return &fakeAWSKMS{keys: newFakeKeyring(tb, awsKeyARN(fakeKEKName), awsKeyARN(otherKEKName))}
}

func (f *fakeAWSKMS) Encrypt(_ context.Context, in *kms.EncryptInput, _ ...func(*kms.Options)) (*kms.EncryptOutput, error) {
	keyID := aws.ToString(in.KeyId)
	sealed, err := f.keys.seal(keyID, in.Plaintext, f.contextAD(in.EncryptionContext))
	if err != nil {
		return nil, awsNotFound(keyID)
	}
	blob := binary.BigEndian.AppendUint16(nil, uint16(len(keyID)))
	blob = append(append(blob, keyID...), sealed...)
	return &kms.EncryptOutput{
		CiphertextBlob:      blob,
		KeyId:               aws.String(keyID),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	}, nil
}

func (f *fakeAWSKMS) Decrypt(_ context.Context, in *kms.DecryptInput, _ ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	ad := f.contextAD(in.EncryptionContext)
	blobKeyID, sealed, ok := parseAWSBlob(in.CiphertextBlob)
	keyID := aws.ToString(in.KeyId)
	if keyID == "" {
		keyID = blobKeyID
	}
	pt, err := f.keys.open(keyID, sealed, ad)
	switch {
	case errors.Is(err, errFakeKeyNotFound):
		return nil, awsNotFound(keyID)
	case ok && keyID != blobKeyID:
		return nil, &types.IncorrectKeyException{Message: aws.String("The key ID in the request does not identify a CMK that can perform this operation.")}
	case err != nil || !ok:
		return nil, &types.InvalidCiphertextException{}
	}
	return &kms.DecryptOutput{
		Plaintext:           pt,
		KeyId:               aws.String(keyID),
		EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault,
	}, nil
}

// contextAD records ec and returns it canonically encoded as the AES-GCM
// associated data (JSON with sorted keys), or nil if it is empty.
func (f *fakeAWSKMS) contextAD(ec map[string]string) []byte {
	f.mu.Lock()
	f.contexts = append(f.contexts, ec)
	f.mu.Unlock()
	if len(ec) == 0 {
		return nil
	}
	ad, err := json.Marshal(ec)
	if err != nil {
		panic(err) // a map[string]string always marshals
	}
	return ad
}

func (f *fakeAWSKMS) lastContext() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.contexts) == 0 {
		return nil
	}
	return f.contexts[len(f.contexts)-1]
}

func parseAWSBlob(blob []byte) (keyID string, sealed []byte, ok bool) {
	if len(blob) < 2 || len(blob)-2 < int(binary.BigEndian.Uint16(blob)) {
		return "", nil, false
	}
	n := 2 + int(binary.BigEndian.Uint16(blob))
	return string(blob[2:n]), blob[n:], true
}

func awsNotFound(keyID string) error {
	return &types.NotFoundException{Message: aws.String("Key '" + keyID + "' does not exist")}
}

// awsWireRequest is the union of the EncryptRequest and DecryptRequest
// members of the KMS JSON 1.1 protocol that Tink uses; blobs are base64.
type awsWireRequest struct {
	KeyId             *string
	Plaintext         []byte
	CiphertextBlob    []byte
	EncryptionContext map[string]string
}

// awsWireResponse is the union of the EncryptResponse and DecryptResponse
// members of the KMS JSON 1.1 protocol.
type awsWireResponse struct {
	KeyId               *string
	CiphertextBlob      []byte `json:",omitempty"`
	Plaintext           []byte `json:",omitempty"`
	EncryptionAlgorithm types.EncryptionAlgorithmSpec
}

// ServeHTTP speaks the KMS wire protocol (POST /, AWS JSON 1.1, X-Amz-Target
// TrentService.Encrypt or .Decrypt), so that a real *kms.Client can be
// pointed at the fake. It requires a SigV4 Authorization header for the
// fake access key, region and service, but does not check the signature.
func (f *fakeAWSKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	scope := "AWS4-HMAC-SHA256 Credential=" + awsAccessKey + "/"
	if !strings.HasPrefix(r.Header.Get("Authorization"), scope) ||
		!strings.Contains(r.Header.Get("Authorization"), "/"+awsRegion+"/kms/aws4_request") {
		writeAWSError(w, http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		writeAWSError(w, http.StatusBadRequest, "UnknownOperationException", "")
		return
	}
	var in awsWireRequest
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeAWSError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	var out awsWireResponse
	var err error
	switch r.Header.Get("X-Amz-Target") {
	case "TrentService.Encrypt":
		var o *kms.EncryptOutput
		o, err = f.Encrypt(r.Context(), &kms.EncryptInput{KeyId: in.KeyId, Plaintext: in.Plaintext, EncryptionContext: in.EncryptionContext})
		if err == nil {
			out = awsWireResponse{KeyId: o.KeyId, CiphertextBlob: o.CiphertextBlob, EncryptionAlgorithm: o.EncryptionAlgorithm}
		}
	case "TrentService.Decrypt":
		var o *kms.DecryptOutput
		o, err = f.Decrypt(r.Context(), &kms.DecryptInput{KeyId: in.KeyId, CiphertextBlob: in.CiphertextBlob, EncryptionContext: in.EncryptionContext})
		if err == nil {
			out = awsWireResponse{KeyId: o.KeyId, Plaintext: o.Plaintext, EncryptionAlgorithm: o.EncryptionAlgorithm}
		}
	default:
		writeAWSError(w, http.StatusBadRequest, "UnknownOperationException", "")
		return
	}
	var apiErr interface {
		ErrorCode() string
		ErrorMessage() string
	}
	if errors.As(err, &apiErr) {
		writeAWSError(w, http.StatusBadRequest, apiErr.ErrorCode(), apiErr.ErrorMessage())
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

func writeAWSError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// awsErrs are the AWS KMS exceptions for remoteKEK.
var awsErrs = kmsErrs{"InvalidCiphertextException", "IncorrectKeyException", "NotFoundException"}

// openAWSKEK opens the KEK for a key name with the fake injected as the
// awskms KMS client.
func openAWSKEK(t *testing.T, fake *fakeAWSKMS, name string) tink.AEAD {
	t.Helper()
	kek, err := crypto.OpenKEK(context.Background(), "aws-kms://"+awsKeyARN(name),
		crypto.WithAWSOptions(awskms.WithKMS(fake)))
	require.NoError(t, err)
	return kek
}

// TestAWSKMSKEK runs Tink's awskms AEAD, as OpenKEK builds it, against the
// fake KMS client: wrap/unwrap, associated data, call counts, wrong keys.
func TestAWSKMSKEK(t *testing.T) {
	fake := newFakeAWSKMS(t)
	testRemoteKEK(t, remoteKEK{
		keys: fake.keys,
		open: func(t *testing.T, name string) tink.AEAD { return openAWSKEK(t, fake, name) },
		errs: awsErrs,
	})
}

// TestAWSKMSKEKEncryptionContext pins how associated data reaches AWS KMS:
// hex-encoded under the EncryptionContext key "associatedData" (awskms v3's
// default, usable in kms:EncryptionContext IAM conditions), and no context
// at all for empty associated data.
func TestAWSKMSKEKEncryptionContext(t *testing.T) {
	fake := newFakeAWSKMS(t)
	kek := openAWSKEK(t, fake, fakeKEKName)
	tests := []struct {
		name string
		ad   []byte
		want map[string]string
	}{
		{"empty", nil, nil},
		{"keyset binding", []byte("cardvault/v1/data/t"), map[string]string{"associatedData": hex.EncodeToString([]byte("cardvault/v1/data/t"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := kek.Encrypt([]byte(samplePAN), tt.ad)
			require.NoError(t, err)
			assert.Equal(t, tt.want, fake.lastContext())
			_, err = kek.Decrypt(ct, tt.ad)
			require.NoError(t, err)
			assert.Equal(t, tt.want, fake.lastContext())
		})
	}
}

// TestAWSKMSKEKErrors checks that the KMS exceptions reach the caller
// intact, so operators see AWS's own error codes.
func TestAWSKMSKEKErrors(t *testing.T) {
	fake := newFakeAWSKMS(t)
	kek := openAWSKEK(t, fake, fakeKEKName)
	ct, err := kek.Encrypt([]byte(samplePAN), []byte("ad"))
	require.NoError(t, err)

	var notFound *types.NotFoundException
	_, err = openAWSKEK(t, fake, missingKEKName).Encrypt([]byte(samplePAN), []byte("ad"))
	require.ErrorAs(t, err, &notFound)

	var incorrect *types.IncorrectKeyException
	_, err = openAWSKEK(t, fake, otherKEKName).Decrypt(ct, []byte("ad"))
	require.ErrorAs(t, err, &incorrect)

	var invalid *types.InvalidCiphertextException
	_, err = kek.Decrypt(ct, []byte("other ad"))
	require.ErrorAs(t, err, &invalid)
}

// TestAWSKMSKEKDefaultChain opens the KEK with no options at all, as the
// server does, so awskms builds a real *kms.Client from the AWS SDK's
// default chain: credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
// region from the key ARN, and the endpoint from AWS_ENDPOINT_URL_KMS,
// pointed at the fake's wire protocol on loopback.
func TestAWSKMSKEKDefaultChain(t *testing.T) {
	fake := newFakeAWSKMS(t)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)

	testRemoteKEK(t, remoteKEK{
		keys: fake.keys,
		open: func(t *testing.T, name string) tink.AEAD {
			t.Helper()
			kek, err := crypto.OpenKEK(context.Background(), "aws-kms://"+awsKeyARN(name))
			require.NoError(t, err)
			return kek
		},
		errs: awsErrs,
	})

	fake.mu.Lock()
	defer fake.mu.Unlock()
	require.NotEmpty(t, fake.auth)
	for _, a := range fake.auth {
		assert.True(t, strings.HasPrefix(a, "AWS4-HMAC-SHA256 Credential="+awsAccessKey+"/"), a)
		assert.Contains(t, a, "/"+awsRegion+"/kms/aws4_request")
	}
}

// setAWSEnv points the AWS SDK's default configuration at endpoint with
// static fake credentials, and hides any shared config, profile, role or
// instance metadata of the machine running the tests.
func setAWSEnv(t *testing.T, endpoint string) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KMS":                   endpoint,
		"AWS_ACCESS_KEY_ID":                      awsAccessKey,
		"AWS_SECRET_ACCESS_KEY":                  "fake-secret-access-key",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_CONFIG_FILE":                        none,
		"AWS_SHARED_CREDENTIALS_FILE":            none,
		"AWS_PROFILE":                            "",
		"AWS_DEFAULT_PROFILE":                    "",
		"AWS_REGION":                             "",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ENDPOINT_URL":                       "",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS":    "",
		"AWS_USE_FIPS_ENDPOINT":                  "",
		"AWS_USE_DUALSTACK_ENDPOINT":             "",
		"AWS_CA_BUNDLE":                          "",
		"AWS_ROLE_ARN":                           "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_EC2_METADATA_DISABLED":              "true",
	} {
		t.Setenv(k, v)
	}
}
