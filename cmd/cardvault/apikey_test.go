package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestTenantListShowsEveryTenant(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	db := []string{"--database-url", migratedDatabase(t), "--kek-uri", kek}
	var ids []string
	for _, name := range []string{"acme", "globex"} {
		out, _, err := run(t, append([]string{"tenant", "create", name}, db...)...)
		require.NoError(t, err)
		ids = append(ids, strings.TrimSpace(out))
	}
	_, _, err := run(t, append([]string{"apikey", "create", "--tenant", ids[0], "--scopes", "tokens:read"}, db...)...)
	require.NoError(t, err)

	out, _, err := run(t, append([]string{"tenant", "list"}, db...)...)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, "a header and one line per tenant: %s", out)
	assert.Equal(t, []string{"ID", "NAME", "CREATED", "API", "KEYS", "TOKENS", "DESTROYED"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{ids[0], "acme"}, strings.Fields(lines[1])[:2], "oldest first")
	assert.Equal(t, []string{"1", "0", "-"}, strings.Fields(lines[1])[3:])
	assert.Equal(t, []string{ids[1], "globex"}, strings.Fields(lines[2])[:2])

	out, _, err = run(t, append([]string{"tenant", "list", "--json"}, db...)...)
	require.NoError(t, err)
	var list []struct {
		ID            string  `json:"id"`
		Name          string  `json:"name"`
		ActiveAPIKeys int     `json:"active_api_keys"`
		DestroyedAt   *string `json:"destroyed_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list, 2)
	assert.Equal(t, ids[0], list[0].ID)
	assert.Equal(t, 1, list[0].ActiveAPIKeys)
	assert.Nil(t, list[1].DestroyedAt)
}

func TestAPIKeyExpiryAndLastUse(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	url := migratedDatabase(t)
	db := []string{"--database-url", url, "--kek-uri", kek}
	out, _, err := run(t, append([]string{"tenant", "create", "acme"}, db...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)

	for _, bad := range []string{"soon", "-3d", "0d", "0"} {
		_, _, err := run(t, append([]string{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read", "--expires-in", bad}, db...)...)
		assert.ErrorContains(t, err, "--expires-in", bad)
	}
	out, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read", "--expires-in", "90d"}, db...)...)
	require.NoError(t, err)
	secret := strings.TrimSpace(out)
	assert.Regexp(t, `^cvk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`, secret, "stdout is only the secret")
	_, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read"}, db...)...)
	require.NoError(t, err)

	svc := vaulttest.NewService(t, url, vaulttest.Options{})
	_ = vaulttest.Actor(t, svc, secret) // one use, recorded as last_used_at

	out, _, err = run(t, append([]string{"apikey", "list", "--tenant", tenant}, db...)...)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Equal(t, []string{"ID", "PREFIX", "SCOPES", "CREATED", "EXPIRES", "LAST", "USED", "REVOKED", "DESCRIPTION"}, strings.Fields(lines[0]))
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if strings.HasPrefix(secret, strings.TrimSuffix(f[1], "_…")) {
			expires, err := time.Parse(time.RFC3339, f[4])
			require.NoError(t, err, "the expiry of the 90d key: %s", line)
			assert.WithinDuration(t, time.Now().Add(90*24*time.Hour), expires, time.Minute)
			_, err = time.Parse(time.RFC3339, f[5])
			assert.NoError(t, err, "its last use: %s", line)
			continue
		}
		assert.Equal(t, []string{"never", "-"}, f[4:6], "the other key never expires and was never used: %s", line)
	}
}
