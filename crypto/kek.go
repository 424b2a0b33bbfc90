package crypto

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	vault "github.com/hashicorp/vault/api"
	"github.com/tink-crypto/tink-go-awskms/v3/integration/awskms"
	"github.com/tink-crypto/tink-go-gcpkms/v2/integration/gcpkms"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/api/option"
)

// KEK URI schemes accepted by OpenKEK.
const (
	schemeLocal   = "local://"
	schemeAWS     = "aws-kms://"
	schemeGCP     = "gcp-kms://"
	schemeVault   = "hcvault://"
	vaultTokenEnv = "VAULT_TOKEN" // HashiCorp's documented variable
	acceptedKEKs  = schemeLocal + "<absolute path>, " + schemeAWS + "arn:aws:kms:..., " +
		schemeGCP + "projects/..., " + schemeVault + "host[:port]/path"
)

// KEKOption configures how OpenKEK reaches a remote KMS; options for other
// schemes than the URI's are ignored.
type KEKOption func(*kekConfig)

type kekConfig struct {
	aws        []awskms.ClientOption
	gcp        []option.ClientOption
	vaultToken string
	vaultTLS   *tls.Config
}

// WithAWSOptions returns a KEKOption passing opts to awskms, e.g.
// awskms.WithKMS to inject a KMS client.
func WithAWSOptions(opts ...awskms.ClientOption) KEKOption {
	return func(c *kekConfig) { c.aws = append(c.aws, opts...) }
}

// WithGCPOptions returns a KEKOption passing opts to the Google API client
// that gcpkms builds, e.g. option.WithEndpoint or option.WithHTTPClient.
func WithGCPOptions(opts ...option.ClientOption) KEKOption {
	return func(c *kekConfig) { c.gcp = append(c.gcp, opts...) }
}

// WithVaultToken returns a KEKOption that uses token for HashiCorp Vault
// instead of the VAULT_TOKEN environment variable.
func WithVaultToken(token string) KEKOption {
	return func(c *kekConfig) { c.vaultToken = token }
}

// WithVaultTLS returns a KEKOption that uses cfg (cloned) for the TLS
// connection to HashiCorp Vault instead of the default configuration.
func WithVaultTLS(cfg *tls.Config) KEKOption {
	return func(c *kekConfig) { c.vaultTLS = cfg }
}

// OpenKEK returns the root key-encryption AEAD named by uri, one of
//
//	local://<absolute path>     cleartext Tink JSON keyset file (dev/tests only)
//	aws-kms://arn:aws:kms:...   AWS KMS key, default credential chain
//	gcp-kms://projects/...      GCP Cloud KMS key, application default credentials
//	hcvault://host[:port]/path  HashiCorp Vault transit key, token from VAULT_TOKEN
//
// It returns an error for an unknown scheme (listing the accepted ones), a
// relative local path, an unreadable keyset or a KMS client that cannot be
// built. It does not call the KMS. Errors never include key material.
func OpenKEK(ctx context.Context, uri string, opts ...KEKOption) (tink.AEAD, error) {
	var cfg kekConfig
	for _, o := range opts {
		o(&cfg)
	}
	switch scheme(uri) {
	case schemeLocal:
		return openLocalKEK(uri)
	case schemeAWS:
		return openAWSKEK(ctx, uri, cfg.aws)
	case schemeGCP:
		return openGCPKEK(ctx, uri, cfg.gcp)
	case schemeVault:
		return openVaultKEK(uri, cfg)
	}
	return nil, fmt.Errorf("crypto: unknown KEK URI scheme in %q; accepted: %s",
		RedactKEKURI(uri), acceptedKEKs)
}

// IsLocalKEK reports whether uri names a local cleartext keyset file, which
// is for development and tests only.
func IsLocalKEK(uri string) bool {
	return scheme(uri) == schemeLocal
}

// CreateLocalKEK writes a fresh AES-256-GCM Tink keyset as cleartext JSON to
// path with mode 0600. It returns an error if path exists (it never
// overwrites) or the keyset cannot be generated or written.
func CreateLocalKEK(path string) error {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("crypto: new local KEK: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("crypto: create local KEK: %w", err)
	}
	werr := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(f))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return fmt.Errorf("crypto: write local KEK %s: %w", path, werr)
	}
	return nil
}

// RedactKEKURI returns uri safe for logs and status output: for hcvault it
// strips any userinfo, query and fragment; other URIs are returned unchanged.
func RedactKEKURI(uri string) string {
	if scheme(uri) != schemeVault {
		return uri
	}
	u, err := url.Parse(uri)
	if err != nil {
		return schemeVault + "(unparsable)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// scheme returns the lower-cased "scheme://" prefix of uri, or "".
func scheme(uri string) string {
	s, _, ok := strings.Cut(uri, "://")
	if !ok {
		return ""
	}
	return strings.ToLower(s) + "://"
}

func openLocalKEK(uri string) (tink.AEAD, error) {
	path := uri[len(schemeLocal):]
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("crypto: local KEK path %q is not absolute", path)
	}
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return nil, fmt.Errorf("crypto: open local KEK: %w", err)
	}
	defer f.Close()
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(f))
	if err != nil {
		return nil, fmt.Errorf("crypto: read local KEK %s: %w", path, err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("crypto: local KEK %s is not an AEAD keyset: %w", path, err)
	}
	return a, nil
}

func openAWSKEK(ctx context.Context, uri string, opts []awskms.ClientOption) (tink.AEAD, error) {
	client, err := awskms.NewClientWithOptions(ctx, uri, opts...)
	if err != nil {
		return nil, fmt.Errorf("crypto: AWS KMS client: %w", err)
	}
	a, err := client.GetAEAD(uri)
	if err != nil {
		return nil, fmt.Errorf("crypto: AWS KMS KEK: %w", err)
	}
	return a, nil
}

// openGCPKEK uses the REST transport, as gcpkms.NewClientWithOptions does;
// it needs no Close, unlike gRPC.
func openGCPKEK(ctx context.Context, uri string, opts []option.ClientOption) (tink.AEAD, error) {
	client, err := gcpkms.NewClient(ctx, uri,
		gcpkms.WithTransport(gcpkms.TransportREST), gcpkms.WithGoogleAPIClientOptions(opts...))
	if err != nil {
		return nil, fmt.Errorf("crypto: GCP KMS client: %w", err)
	}
	a, err := client.GetAEAD(uri)
	if err != nil {
		return nil, fmt.Errorf("crypto: GCP KMS KEK: %w", err)
	}
	return a, nil
}

// openVaultKEK builds a Vault client for the URI's host over HTTPS and a
// transit AEAD that sends associated data as Vault's "associated_data".
func openVaultKEK(uri string, cfg kekConfig) (tink.AEAD, error) {
	keyURI := RedactKEKURI(uri)
	u, err := url.Parse(keyURI)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("crypto: malformed Vault KEK URI %q", keyURI)
	}
	logical, err := newVaultLogical(u.Host, cfg)
	if err != nil {
		return nil, err
	}
	client, err := hcvault.NewClientWithAEADOptions(keyURI, logical)
	if err != nil {
		return nil, fmt.Errorf("crypto: Vault KMS client: %w", err)
	}
	a, err := client.GetAEAD(keyURI)
	if err != nil {
		return nil, fmt.Errorf("crypto: Vault KEK: %w", err)
	}
	return a, nil
}

// newVaultLogical returns a Vault client for https://host, authenticated
// with the configured token or VAULT_TOKEN.
func newVaultLogical(host string, cfg kekConfig) (*vault.Logical, error) {
	token := cfg.vaultToken
	if token == "" {
		token = os.Getenv(vaultTokenEnv)
	}
	if token == "" {
		return nil, errors.New("crypto: Vault KEK: no token (set " + vaultTokenEnv + ")")
	}
	vcfg, err := vaultConfig(host, cfg.vaultTLS)
	if err != nil {
		return nil, err
	}
	client, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, fmt.Errorf("crypto: Vault client: %w", err)
	}
	client.SetToken(token)
	return client.Logical(), nil
}

// vaultConfig returns Vault's default configuration (which honours its
// VAULT_CACERT-style variables) pointed at https://host, with tlsCfg if set.
func vaultConfig(host string, tlsCfg *tls.Config) (*vault.Config, error) {
	vcfg := vault.DefaultConfig()
	if vcfg.Error != nil {
		return nil, fmt.Errorf("crypto: Vault config: %w", vcfg.Error)
	}
	vcfg.Address = "https://" + host
	if tlsCfg != nil {
		transport, ok := vcfg.HttpClient.Transport.(*http.Transport)
		if !ok {
			return nil, errors.New("crypto: Vault config: unexpected HTTP transport")
		}
		transport.TLSClientConfig = tlsCfg.Clone()
	}
	return vcfg, nil
}
