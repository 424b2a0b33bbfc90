package crypto_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

const (
	vaultFakeToken   = "hvs.cardvault-fake-token"
	vaultCiphertextV = "vault:v1:"
)

// vaultRequest is what the Vault fake saw of one request.
type vaultRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Params                 []string // JSON body keys, sorted
}

// fakeVault serves HashiCorp Vault's transit API for a mount at "transit":
// PUT or POST /v1/transit/encrypt/<key> and /v1/transit/decrypt/<key>, with
// base64 "plaintext", base64 "associated_data" (the AEAD associated data)
// and "vault:v1:<base64>" ciphertexts, under real AES-GCM per key name. It
// requires X-Vault-Token (403 "permission denied" otherwise) and answers an
// unknown key with 400 "encryption key not found", as Vault does for decrypt
// and for encrypt when the token may not create keys.
type fakeVault struct {
	keys *fakeKeyring

	mu       sync.Mutex
	requests []vaultRequest
}

func newFakeVault(tb testing.TB) *fakeVault {
	tb.Helper()
	return &fakeVault{keys: newFakeKeyring(tb, fakeKEKName, otherKEKName)}
}

func (f *fakeVault) seen() []vaultRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var params map[string]any
	if err := json.NewDecoder(r.Body).Decode(&params); err != nil && !errors.Is(err, io.EOF) {
		writeVaultErrors(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
		return
	}
	f.mu.Lock()
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	f.requests = append(f.requests, vaultRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), keys})
	f.mu.Unlock()

	if r.Header.Get("X-Vault-Token") != vaultFakeToken {
		writeVaultErrors(w, http.StatusForbidden, "permission denied")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/transit/")
	op, name, _ := strings.Cut(rest, "/")
	if !ok || name == "" || strings.Contains(name, "/") || (op != "encrypt" && op != "decrypt") {
		writeVaultErrors(w, http.StatusNotFound, "no handler for route \""+strings.TrimPrefix(r.URL.Path, "/v1/")+"\". route entry not found.")
		return
	}
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		writeVaultErrors(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	ad, err := vaultBase64Param(params, "associated_data")
	if err != nil {
		writeVaultErrors(w, http.StatusBadRequest, "failed to base64-decode associated_data")
		return
	}
	if op == "encrypt" {
		f.encrypt(w, name, params, ad)
	} else {
		f.decrypt(w, name, params, ad)
	}
}

func (f *fakeVault) encrypt(w http.ResponseWriter, name string, params map[string]any, ad []byte) {
	if _, ok := params["plaintext"].(string); !ok {
		writeVaultErrors(w, http.StatusBadRequest, "missing plaintext to encrypt")
		return
	}
	pt, err := vaultBase64Param(params, "plaintext")
	if err != nil {
		writeVaultErrors(w, http.StatusBadRequest, "failed to base64-decode plaintext")
		return
	}
	sealed, err := f.keys.seal(name, pt, ad)
	if err != nil {
		writeVaultErrors(w, http.StatusBadRequest, "encryption key not found")
		return
	}
	writeVaultData(w, map[string]any{
		"ciphertext":  vaultCiphertextV + base64.StdEncoding.EncodeToString(sealed),
		"key_version": 1,
	})
}

func (f *fakeVault) decrypt(w http.ResponseWriter, name string, params map[string]any, ad []byte) {
	ct, _ := params["ciphertext"].(string)
	b64, ok := strings.CutPrefix(ct, vaultCiphertextV)
	if !ok {
		writeVaultErrors(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
		return
	}
	sealed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		writeVaultErrors(w, http.StatusBadRequest, "invalid ciphertext: could not decode")
		return
	}
	pt, err := f.keys.open(name, sealed, ad)
	switch {
	case errors.Is(err, errFakeKeyNotFound):
		writeVaultErrors(w, http.StatusBadRequest, "encryption key not found")
		return
	case err != nil:
		writeVaultErrors(w, http.StatusBadRequest, "cipher: message authentication failed")
		return
	}
	writeVaultData(w, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
}

func vaultBase64Param(params map[string]any, name string) ([]byte, error) {
	s, _ := params[name].(string)
	return base64.StdEncoding.DecodeString(s)
}

func writeVaultData(w http.ResponseWriter, data map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"request_id": "00000000-0000-0000-0000-000000000000", "lease_id": "", "renewable": false,
		"lease_duration": 0, "data": data, "wrap_info": nil, "warnings": nil, "auth": nil,
	})
}

func writeVaultErrors(w http.ResponseWriter, status int, errs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

// vaultServer is a started Vault fake: its host:port, a TLS configuration
// that trusts its certificate and nothing else, and that certificate as a
// PEM file (for VAULT_CACERT).
type vaultServer struct {
	host   string
	tls    *tls.Config
	caFile string
}

// startVault serves fake over TLS on loopback, quietly (failed handshakes
// are expected in some tests), with the Vault environment cleared.
func startVault(t *testing.T, fake *fakeVault) vaultServer {
	t.Helper()
	clearVaultEnv(t)
	srv := httptest.NewUnstartedServer(fake)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	require.NoError(t, os.WriteFile(caFile, certPEM, 0o600))
	return vaultServer{
		host:   srv.Listener.Addr().String(),
		tls:    &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		caFile: caFile,
	}
}

// clearVaultEnv hides the Vault client variables of the machine running the
// tests, which vault.DefaultConfig and vault.NewClient would otherwise read.
func clearVaultEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"VAULT_TOKEN", "VAULT_ADDR", "VAULT_AGENT_ADDR", "VAULT_CACERT", "VAULT_CACERT_BYTES",
		"VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_SKIP_VERIFY",
		"VAULT_TLS_SERVER_NAME", "VAULT_NAMESPACE", "VAULT_HEADERS", "VAULT_WRAP_TTL",
		"VAULT_MFA", "VAULT_HTTP_PROXY", "VAULT_PROXY_ADDR", "VAULT_SRV_LOOKUP",
		"VAULT_MAX_RETRIES", "VAULT_RATE_LIMIT", "VAULT_CLIENT_TIMEOUT", "VAULT_DISABLE_REDIRECTS",
	} {
		t.Setenv(k, "")
	}
}

func vaultKeyURI(host, name string) string {
	return "hcvault://" + host + "/transit/keys/" + name
}

func openVaultKEK(t *testing.T, uri string, opts ...crypto.KEKOption) tink.AEAD {
	t.Helper()
	kek, err := crypto.OpenKEK(context.Background(), uri, opts...)
	require.NoError(t, err)
	return kek
}

// TestVaultKEK runs Tink's hcvault AEAD, over the Vault API client OpenKEK
// builds, against the fake transit API over TLS: wrap/unwrap, associated
// data, call counts, wrong keys.
func TestVaultKEK(t *testing.T) {
	fake := newFakeVault(t)
	srv := startVault(t, fake)
	testRemoteKEK(t, remoteKEK{
		keys: fake.keys,
		open: func(t *testing.T, name string) tink.AEAD {
			return openVaultKEK(t, vaultKeyURI(srv.host, name), crypto.WithVaultToken(vaultFakeToken), crypto.WithVaultTLS(srv.tls))
		},
		errs: kmsErrs{BadAD: "message authentication failed", OtherKey: "message authentication failed", NotFound: "encryption key not found"},
	})
}

// TestVaultKEKWireFormat pins the requests: transit encrypt/decrypt paths
// derived from .../keys/<key>, the token header, and associated data sent as
// "associated_data" (never the legacy "context", which Vault ignores for
// non-derived keys).
func TestVaultKEKWireFormat(t *testing.T) {
	fake := newFakeVault(t)
	srv := startVault(t, fake)
	kek := openVaultKEK(t, vaultKeyURI(srv.host, fakeKEKName), crypto.WithVaultToken(vaultFakeToken), crypto.WithVaultTLS(srv.tls))
	ad := []byte("cardvault/v1/data/" + tenantA)

	ct, err := kek.Encrypt([]byte(samplePAN), ad)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(ct), vaultCiphertextV), "ciphertext %q", ct)
	_, err = kek.Decrypt(ct, ad)
	require.NoError(t, err)

	got := fake.seen()
	require.Len(t, got, 2)
	want := []struct {
		path   string
		params []string
	}{
		{"/v1/transit/encrypt/" + fakeKEKName, []string{"associated_data", "plaintext"}},
		{"/v1/transit/decrypt/" + fakeKEKName, []string{"associated_data", "ciphertext"}},
	}
	for i, w := range want {
		assert.Equal(t, http.MethodPut, got[i].Method)
		assert.Equal(t, w.path, got[i].Path)
		assert.Equal(t, w.params, got[i].Params)
		assert.Equal(t, vaultFakeToken, got[i].Header.Get("X-Vault-Token"))
	}
}

// TestVaultKEKAuthAndTLS checks where the token and the server's CA come
// from, that a wrong token or an untrusted certificate fails (without the
// token in the error), and that VAULT_NAMESPACE is sent.
func TestVaultKEKAuthAndTLS(t *testing.T) {
	tests := []struct {
		name string
		// setup sets the environment and returns the options for OpenKEK.
		setup        func(t *testing.T, srv vaultServer) []crypto.KEKOption
		wantErr      string // "" for success
		wantRequests bool
		wantHeader   [2]string // a header every request must carry, if set
	}{
		{
			name: "token and TLS options",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				return []crypto.KEKOption{crypto.WithVaultToken(vaultFakeToken), crypto.WithVaultTLS(srv.tls)}
			},
			wantRequests: true,
		},
		{
			name: "token from VAULT_TOKEN",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				t.Setenv("VAULT_TOKEN", vaultFakeToken)
				return []crypto.KEKOption{crypto.WithVaultTLS(srv.tls)}
			},
			wantRequests: true,
		},
		{
			name: "token option wins over VAULT_TOKEN",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				t.Setenv("VAULT_TOKEN", "hvs.env-token")
				return []crypto.KEKOption{crypto.WithVaultToken(vaultFakeToken), crypto.WithVaultTLS(srv.tls)}
			},
			wantRequests: true,
		},
		{
			name: "CA from VAULT_CACERT",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				t.Setenv("VAULT_CACERT", srv.caFile)
				return []crypto.KEKOption{crypto.WithVaultToken(vaultFakeToken)}
			},
			wantRequests: true,
		},
		{
			name: "namespace from VAULT_NAMESPACE",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				t.Setenv("VAULT_NAMESPACE", "payments")
				return []crypto.KEKOption{crypto.WithVaultToken(vaultFakeToken), crypto.WithVaultTLS(srv.tls)}
			},
			wantRequests: true,
			wantHeader:   [2]string{"X-Vault-Namespace", "payments"},
		},
		{
			name: "wrong token",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				return []crypto.KEKOption{crypto.WithVaultToken("hvs.wrong-token"), crypto.WithVaultTLS(srv.tls)}
			},
			wantErr:      "permission denied",
			wantRequests: true,
		},
		{
			name: "untrusted certificate",
			setup: func(t *testing.T, srv vaultServer) []crypto.KEKOption {
				return []crypto.KEKOption{crypto.WithVaultToken(vaultFakeToken)}
			},
			wantErr: "certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeVault(t)
			srv := startVault(t, fake)
			kek := openVaultKEK(t, vaultKeyURI(srv.host, fakeKEKName), tt.setup(t, srv)...)

			ct, err := kek.Encrypt([]byte(samplePAN), []byte("ad"))
			if err == nil {
				_, err = kek.Decrypt(ct, []byte("ad"))
			}

			if tt.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "hvs.")
			}
			seen := fake.seen()
			assert.Equal(t, tt.wantRequests, len(seen) > 0, "requests reached the server")
			if tt.wantHeader[0] != "" {
				for _, r := range seen {
					assert.Equal(t, tt.wantHeader[1], r.Header.Get(tt.wantHeader[0]))
				}
			}
		})
	}
}

// TestVaultKEKURISecrets gives OpenKEK Vault URIs carrying secrets in the
// userinfo, query and fragment: RedactKEKURI strips them, the KEK still
// works, and no secret reaches the server (path, query or any header) or an
// error message, including OpenKEK's own for a URI without a host.
func TestVaultKEKURISecrets(t *testing.T) {
	const secret = "s3cret"
	fake := newFakeVault(t)
	srv := startVault(t, fake)
	withSecrets := func(hostAndPath string) string {
		return "hcvault://vault-user:" + secret + "@" + hostAndPath + "?token=" + secret + "#" + secret
	}
	tests := []struct {
		name, uri, redacted string
		openErr, wrapErr    string // "" for success
	}{
		{
			name:     "existing key",
			uri:      withSecrets(srv.host + "/transit/keys/" + fakeKEKName),
			redacted: vaultKeyURI(srv.host, fakeKEKName),
		},
		{
			name:     "missing key",
			uri:      withSecrets(srv.host + "/transit/keys/" + missingKEKName),
			redacted: vaultKeyURI(srv.host, missingKEKName),
			wrapErr:  "encryption key not found",
		},
		{
			name:     "no host",
			uri:      withSecrets("/transit/keys/" + fakeKEKName),
			redacted: "hcvault:///transit/keys/" + fakeKEKName,
			openErr:  "malformed Vault KEK URI",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.redacted, crypto.RedactKEKURI(tt.uri))
			kek, err := crypto.OpenKEK(context.Background(), tt.uri,
				crypto.WithVaultToken(vaultFakeToken), crypto.WithVaultTLS(srv.tls))
			if tt.openErr != "" {
				require.ErrorContains(t, err, tt.openErr)
				assert.NotContains(t, err.Error(), secret)
				return
			}
			require.NoError(t, err)
			_, err = crypto.WrapKeyset(newDataKeyset(t), kek, tenantA, crypto.PurposeData)
			if tt.wrapErr != "" {
				require.ErrorContains(t, err, tt.wrapErr)
				assert.NotContains(t, err.Error(), secret)
			} else {
				require.NoError(t, err)
			}
		})
	}
	seen := fake.seen()
	require.Len(t, seen, 2)
	for _, r := range seen {
		assert.NotContains(t, r.Path+"?"+r.RawQuery, secret)
		assert.Empty(t, r.Header.Get("Authorization"))
		for name, values := range r.Header {
			for _, v := range values {
				assert.NotContains(t, v, secret, "header %s", name)
			}
		}
	}
}
