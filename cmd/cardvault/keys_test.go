package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// keyReport runs keys status --json.
func keyReport(t *testing.T, flags ...string) vault.KeyReport {
	t.Helper()
	out, _, err := run(t, append([]string{"keys", "status", "--json"}, flags...)...)
	require.NoError(t, err)
	var r vault.KeyReport
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	return r
}

func keyIn(r vault.KeyReport, state string) vault.KeyVersion {
	for _, k := range r.Tenants[0].Keys {
		if k.State == state {
			return k
		}
	}
	return vault.KeyVersion{}
}

// TestRotatingKeysWalkthrough follows the README's "Rotating keys" section.
func TestRotatingKeysWalkthrough(t *testing.T) {
	kek, kekURI := vaulttest.KEK(t)
	url := migratedDatabase(t)
	flags := []string{"--database-url", url, "--kek-uri", kekURI}
	out, _, err := run(t, append([]string{"tenant", "create", "acme"}, flags...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)
	svc := vaulttest.NewService(t, url, vaulttest.Options{KEK: kek})
	key, _, err := svc.CreateAPIKey(t.Context(), mustUUID(t, tenant), vault.AllScopes, "")
	require.NoError(t, err)
	actor := vaulttest.Actor(t, svc, key)
	for i := range 25 {
		in := vault.TokenizeInput{Card: card.CardInput{Number: vaulttest.LuhnNumber("424242", 16, i), ExpMonth: "1", ExpYear: "2030"}}
		_, _, err := svc.Tokenize(t.Context(), actor, in)
		require.NoError(t, err)
	}

	old := keyIn(keyReport(t, flags...), "primary")
	require.Equal(t, int64(25), old.Tokens)
	_, rotating, err := run(t, append([]string{"keys", "rotate", "--tenant", tenant, "--key-refresh", "100ms"}, flags...)...)
	require.NoError(t, err)
	assert.Contains(t, rotating, "waiting 1.2s (2 × --key-refresh 100ms + 1s) for every replica to load it",
		"the rotation says what it waits for")
	_, errOut, err := run(t, append([]string{"keys", "reencrypt", "--tenant", tenant, "--wait"}, flags...)...)
	require.NoError(t, err)
	assert.Contains(t, errOut, "re-encrypting", "a progress bar on the terminal")
	r := keyReport(t, flags...)
	assert.Equal(t, int64(25), keyIn(r, "primary").Tokens)
	assert.Equal(t, int64(0), keyIn(r, "active").Tokens)
	assert.Equal(t, int64(25), keyIn(r, "primary").Encryptions, "the CLI's re-encryption is counted")

	_, _, err = run(t, append([]string{"keys", "retire", "--tenant", tenant, "--key", u32(old.KeyID)}, flags...)...)
	require.NoError(t, err)
	_, _, err = run(t, append([]string{"keys", "retire", "--tenant", tenant, "--key", u32(old.KeyID), "--destroy"}, flags...)...)
	require.NoError(t, err)
	r = keyReport(t, flags...)
	destroyed := keyIn(r, "destroyed")
	assert.Equal(t, old.KeyID, destroyed.KeyID)
	assert.Zero(t, destroyed.Tokens)
	assert.NotContains(t, r.RootKEKURI, "{", "no key material in the report")

	// Root KEK rotation: afterwards only the new KEK starts the vault.
	_, newURI := vaulttest.KEK(t)
	out, _, err = run(t, append([]string{"keys", "rotate-root", "--new-kek-uri", newURI, "--dry-run"}, flags...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "dry run: 2 keysets of 1 tenants")
	_, _, err = run(t, append([]string{"keys", "rotate-root", "--new-kek-uri", newURI}, flags...)...)
	require.NoError(t, err)
	_, _, err = run(t, "keys", "status", "--database-url", url, "--kek-uri", kekURI)
	assert.ErrorContains(t, err, "cannot open the tenant keysets", "the old KEK alone refuses to start")
	newFlags := []string{"--database-url", url, "--kek-uri", newURI}
	assert.Equal(t, int64(25), keyIn(keyReport(t, newFlags...), "primary").Tokens)

	_, _, err = run(t, append([]string{"tenant", "destroy", tenant}, newFlags...)...)
	assert.ErrorContains(t, err, "--confirm")
	out, _, err = run(t, append([]string{"tenant", "destroy", tenant, "--confirm"}, newFlags...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "25 tokens")
}
