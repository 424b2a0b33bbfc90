package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestAuditVerifyCommand(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	url := migratedDatabase(t)
	db := []string{"--database-url", url, "--kek-uri", kek}
	out, _, err := run(t, append([]string{"tenant", "create", "audited"}, db...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)
	_, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read"}, db...)...)
	require.NoError(t, err)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var rows int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&rows))
	require.Positive(t, rows)

	out, _, err = run(t, append([]string{"audit", "verify"}, db...)...)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("ok: %d rows in 1 chains, 0 not yet chained\n", rows), out, "the command chains, then verifies")

	out, _, err = run(t, append([]string{"audit", "verify", "--tenant", tenant, "--json"}, db...)...)
	require.NoError(t, err)
	var r vault.AuditReport
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, vault.AuditReport{OK: true, Rows: int64(rows), Chains: 1, Breaks: []vault.AuditBreak{}}, r)

	var id int64
	require.NoError(t, conn.QueryRow(ctx, `UPDATE audit_events SET detail = '{"name":"someone else"}'
		WHERE chain_seq = 1 AND tenant_id = $1 RETURNING id`, mustUUID(t, tenant)).Scan(&id))
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--tenant", tenant}} {
		out, _, err = run(t, append(args, db...)...)
		assert.ErrorIs(t, err, errAuditBroken, "exit status 1")
		assert.Equal(t, fmt.Sprintf("BROKEN chain %s: first bad row id %d, seq 1: changed: row id %d at seq 1 does not match its hash: its content was changed\n",
			tenant, id, id), out)
	}

	_, _, err = run(t, append([]string{"audit", "verify", "--tenant", "acme"}, db...)...)
	assert.ErrorContains(t, err, `"acme" is not a tenant id`)
}

// TestAuditRetentionIsValidated checks the retention serve prunes with;
// `audit verify` does not prune, so it neither takes nor checks it.
func TestAuditRetentionIsValidated(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	serveArgs := []string{"serve", "--database-url", dbURL, "--kek-uri", kek, "--listen", "127.0.0.1:0"}
	for _, v := range []string{"12h", "0d", "forever", "-5d"} {
		t.Run(v, func(t *testing.T) {
			_, _, err := run(t, append(serveArgs, "--audit-retention", v)...)
			assert.ErrorContains(t, err, "VAULT_AUDIT_RETENTION")
		})
	}
	t.Run("from the environment", func(t *testing.T) {
		t.Setenv("VAULT_AUDIT_RETENTION", "1h")
		_, _, err := run(t, serveArgs...)
		assert.ErrorContains(t, err, "VAULT_AUDIT_RETENTION")
	})
	t.Run("not read by audit verify", func(t *testing.T) {
		t.Setenv("VAULT_AUDIT_RETENTION", "1h")
		_, _, err := run(t, "audit", "verify", "--database-url", dbURL, "--kek-uri", kek)
		assert.NoError(t, err)
	})
}
