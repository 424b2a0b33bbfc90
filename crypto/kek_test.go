package crypto_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/api/option"

	"github.com/cardvault/cardvault/crypto"
)

func TestLocalKEKRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	require.NoError(t, crypto.CreateLocalKEK(path))

	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	kek, err := crypto.OpenKEK(context.Background(), "local://"+path)
	require.NoError(t, err)
	ad := []byte("ad")
	ct, err := kek.Encrypt([]byte(samplePAN), ad)
	require.NoError(t, err)
	pt, err := kek.Decrypt(ct, ad)
	require.NoError(t, err)
	assert.Equal(t, samplePAN, string(pt))
}

func TestCreateLocalKEKRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.json")
	require.NoError(t, crypto.CreateLocalKEK(path))
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	require.Error(t, crypto.CreateLocalKEK(path))

	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

func TestOpenKEKErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	notKeyset := filepath.Join(t.TempDir(), "junk.json")
	require.NoError(t, os.WriteFile(notKeyset, []byte("{}"), 0o600))
	tests := []struct {
		name, uri, want string
	}{
		{"relative local path", "local://kek.json", "not absolute"},
		{"dot-relative local path", "local://./kek.json", "not absolute"},
		{"empty local path", "local://", "not absolute"},
		{"missing local file", "local://" + missing, "open local KEK"},
		{"not a keyset", "local://" + notKeyset, "read local KEK"},
		{"unknown scheme", "file:///etc/kek.json", "accepted: local://"},
		{"no scheme", "/etc/kek.json", "accepted: local://"},
		{"empty", "", "accepted: local://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, err := crypto.OpenKEK(context.Background(), tt.uri)
			require.Error(t, err)
			assert.Nil(t, kek)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestOpenKEKUnknownSchemeListsAccepted(t *testing.T) {
	_, err := crypto.OpenKEK(context.Background(), "kms://key")
	require.Error(t, err)
	for _, s := range []string{"local://", "aws-kms://", "gcp-kms://", "hcvault://"} {
		assert.Contains(t, err.Error(), s)
	}
}

func TestOpenKEKVault(t *testing.T) {
	const uri = "hcvault://vault.example.com:8200/transit/keys/cardvault"
	t.Run("no token", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "")
		_, err := crypto.OpenKEK(context.Background(), uri)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "VAULT_TOKEN")
	})
	t.Run("token from env", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "s.env-token")
		kek, err := crypto.OpenKEK(context.Background(), uri)
		require.NoError(t, err)
		assert.NotNil(t, kek)
	})
	t.Run("token option", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", "")
		kek, err := crypto.OpenKEK(context.Background(), uri, crypto.WithVaultToken("s.opt-token"))
		require.NoError(t, err)
		assert.NotNil(t, kek)
	})
	t.Run("no host", func(t *testing.T) {
		_, err := crypto.OpenKEK(context.Background(), "hcvault:///transit/keys/k", crypto.WithVaultToken("s.opt-token"))
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "s.opt-token")
	})
}

func TestOpenKEKGCPOptions(t *testing.T) {
	kek, err := crypto.OpenKEK(context.Background(),
		"gcp-kms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
		crypto.WithGCPOptions(option.WithoutAuthentication(), option.WithEndpoint("https://kms.invalid/")))
	require.NoError(t, err)
	assert.NotNil(t, kek)
}

func TestIsLocalKEK(t *testing.T) {
	tests := []struct {
		uri  string
		want bool
	}{
		{"local:///etc/kek.json", true},
		{"LOCAL:///etc/kek.json", true},
		{"aws-kms://arn:aws:kms:us-east-1:111122223333:key/k", false},
		{"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", false},
		{"hcvault://vault:8200/transit/keys/k", false},
		{"/etc/kek.json", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			assert.Equal(t, tt.want, crypto.IsLocalKEK(tt.uri))
		})
	}
}

func TestRedactKEKURI(t *testing.T) {
	tests := []struct {
		name, uri, want string
	}{
		{"local unchanged", "local:///etc/kek.json", "local:///etc/kek.json"},
		{"aws unchanged", "aws-kms://arn:aws:kms:us-east-1:111122223333:key/k", "aws-kms://arn:aws:kms:us-east-1:111122223333:key/k"},
		{"gcp unchanged", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"},
		{"vault plain", "hcvault://vault:8200/transit/keys/k", "hcvault://vault:8200/transit/keys/k"},
		{"vault userinfo", "hcvault://user:s3cret@vault:8200/transit/keys/k", "hcvault://vault:8200/transit/keys/k"},
		{"vault query", "hcvault://vault:8200/transit/keys/k?token=s3cret#s3cret", "hcvault://vault:8200/transit/keys/k"},
		{"vault unparsable", "hcvault://s3cret@vault:bad port/%zz", "hcvault://(unparsable)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := crypto.RedactKEKURI(tt.uri)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, "s3cret")
		})
	}
}
