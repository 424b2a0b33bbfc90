package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// operatorsOf returns the operator named by each audit row of action, in
// the order they were written.
func operatorsOf(t *testing.T, url string, action vault.Action) []string {
	t.Helper()
	rows, err := vaulttest.Pool(t, url).Query(context.Background(),
		`SELECT coalesce(detail->>'operator', '') FROM audit_events WHERE action = $1 ORDER BY id`, string(action))
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var op string
		require.NoError(t, rows.Scan(&op))
		out = append(out, op)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestKeyAndTenantCommandsRequireAnOperator: a command that changes keys,
// tenants or API keys refuses to run unless --operator or VAULT_OPERATOR
// names the person running it, and says how to name them; nothing is
// changed.
func TestKeyAndTenantCommandsRequireAnOperator(t *testing.T) {
	_, kekURI := vaulttest.KEK(t)
	url := migratedDatabase(t)
	flags := []string{"--database-url", url, "--kek-uri", kekURI}
	out, _, err := run(t, append([]string{"tenant", "create", "acme"}, flags...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)

	t.Setenv("VAULT_OPERATOR", "")
	for _, args := range [][]string{
		{"keys", "rotate", "--tenant", tenant, "--key-refresh", "100ms"},
		{"keys", "retire", "--tenant", tenant, "--key", "1"},
		{"keys", "reencrypt", "--tenant", tenant},
		{"keys", "rotate-root", "--new-kek-uri", kekURI},
		{"tenant", "create", "other"},
		{"tenant", "destroy", tenant, "--confirm"},
		{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read"},
		{"apikey", "revoke", "cvk_abcd"},
		{"pgp", "key", "create", "--tenant", tenant},
		{"pgp", "key", "retire", "00000000-0000-4000-8000-000000000001", "--tenant", tenant},
		{"export", "file", "--tenant", tenant, "--recipient-key", "x.asc", "--format", "jsonl", "--out", "x.pgp", "--confirm"},
		{"export", "run", "--tenant", tenant, "--destination", "fwddst_x"},
	} {
		_, _, err := run(t, append(args, flags...)...)
		require.Error(t, err, "%v", args)
		assert.Contains(t, err.Error(), "--operator NAME or VAULT_OPERATOR=NAME", "%v", args)
	}
	assert.Empty(t, operatorsOf(t, url, vault.ActionKeyAdd), "nothing rotated")
	assert.Len(t, operatorsOf(t, url, vault.ActionTenantCreate), 1, "only the first tenant")
}

// TestAuditRowsNameTheOperator: --operator (or VAULT_OPERATOR) is named in
// the audit rows of what the command did; a read-only command without one
// names the OS user@host.
func TestAuditRowsNameTheOperator(t *testing.T) {
	_, kekURI := vaulttest.KEK(t)
	url := migratedDatabase(t)
	flags := []string{"--database-url", url, "--kek-uri", kekURI}
	out, _, err := run(t, append([]string{"tenant", "create", "acme", "--operator", "bob"}, flags...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)
	_, _, err = run(t, append([]string{"keys", "rotate", "--tenant", tenant, "--key-refresh", "100ms", "--operator", "alice"}, flags...)...)
	require.NoError(t, err)
	t.Setenv("VAULT_OPERATOR", "carol")
	_, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read"}, flags...)...)
	require.NoError(t, err)
	t.Setenv("VAULT_OPERATOR", "")
	_, _, err = run(t, append([]string{"keys", "status", "--tenant", tenant}, flags...)...)
	require.NoError(t, err)

	assert.Equal(t, []string{"bob"}, operatorsOf(t, url, vault.ActionTenantCreate))
	assert.Equal(t, []string{"bob"}, operatorsOf(t, url, vault.ActionKeysetCreate))
	assert.Equal(t, []string{"alice"}, operatorsOf(t, url, vault.ActionKeyAdd))
	assert.Equal(t, []string{"alice"}, operatorsOf(t, url, vault.ActionKeyPromote))
	assert.Equal(t, []string{"carol"}, operatorsOf(t, url, vault.ActionAPIKeyCreate))
	assert.Equal(t, []string{defaultOperator()}, operatorsOf(t, url, vault.ActionKeyStatus))
	assert.Contains(t, defaultOperator(), "@", "user@host")
	assert.NotContains(t, defaultOperator(), "unknown")
}
