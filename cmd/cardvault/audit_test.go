package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
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
	assert.Equal(t, fmt.Sprintf("ok: %d rows in 1 chains, 0 not yet chained\n", rows), out, "every row was chained when written")

	out, _, err = run(t, append([]string{"audit", "verify", "--tenant", tenant, "--json"}, db...)...)
	require.NoError(t, err)
	var r vault.AuditReport
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, vault.AuditReport{OK: true, Rows: int64(rows), Chains: 1, Breaks: []vault.AuditBreak{}}, r)

	// An export kept outside the database, then the tail cut off as a DBA
	// would: rows deleted, the head moved back, the stored checkpoints removed.
	export := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	_, _, err = run(t, append([]string{"audit", "checkpoint", "export", "--out", export}, db...)...)
	require.NoError(t, err)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	for _, q := range []string{
		`SET LOCAL session_replication_role = replica`,
		`DELETE FROM audit_events WHERE chain_seq = 3 AND tenant_id = '` + tenant + `'`,
		`UPDATE audit_lanes l SET seq = 2, hash = a.row_hash FROM audit_events a
		 WHERE a.tenant_id = l.chain_id AND a.chain_lane = l.lane AND a.chain_seq = 2 AND l.lane = 0`,
		`DELETE FROM audit_checkpoints`,
	} {
		_, err = tx.Exec(ctx, q)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit(ctx))
	out, _, err = run(t, append([]string{"audit", "verify"}, db...)...)
	require.NoError(t, err, "without the export, a cut tail is a shorter chain: %s", out)
	out, _, err = run(t, append([]string{"audit", "verify", "--checkpoints", export}, db...)...)
	assert.ErrorIs(t, err, errAuditBroken, "exit status 1")
	assert.Equal(t, fmt.Sprintf("BROKEN chain %s: first bad row id -, seq 3: truncated: lane 0 ends at seq 2 but a checkpoint of", tenant),
		out[:strings.Index(out, " of ")+3])

	var id int64
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SET LOCAL session_replication_role = replica`)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, `UPDATE audit_events SET detail = '{"name":"someone else"}'
		WHERE chain_seq = 1 AND tenant_id = $1 RETURNING id`, mustUUID(t, tenant)).Scan(&id))
	require.NoError(t, tx.Commit(ctx))
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--tenant", tenant}} {
		out, _, err = run(t, append(args, db...)...)
		assert.ErrorIs(t, err, errAuditBroken, "exit status 1")
		assert.Equal(t, fmt.Sprintf("BROKEN chain %s: first bad row id %d, seq 1: changed: lane 0: row id %d at seq 1 does not match its keyed hash: it was changed or forged\n",
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
