package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/migrations"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestAuditPartitioningMovesEveryRow(t *testing.T) {
	ctx := context.Background()
	url := emptyDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, migrations.MigrateTo(ctx, conn, 22))
	// Rows from before lanes (the former chainer had not reached them) and
	// a written-once-era row, in two months.
	_, err = conn.Exec(ctx, `INSERT INTO audit_events (occurred_at, action, outcome, request_id, detail)
		VALUES ('2025-11-03T10:00:00Z', 'auth.failed', 'failure', 'req_old_1', '{"count":1}'),
		       ('2025-12-24T10:00:00Z', 'auth.failed', 'failure', 'req_old_2', '{"count":2}')`)
	require.NoError(t, err)
	var maxID int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT max(id) FROM audit_events`).Scan(&maxID))
	require.NoError(t, migrations.MigrateTo(ctx, conn, 23))

	var parts []string
	rows, err := conn.Query(ctx, `SELECT tableoid::regclass::text FROM audit_events ORDER BY id`)
	require.NoError(t, err)
	parts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"audit_events_2025_11", "audit_events_2025_12"}, parts, "each row in its month")
	var index bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'audit_events'
		AND indexname = 'audit_events_tenant_errors')`).Scan(&index))
	assert.True(t, index, "the console's error index is kept")
	require.NoError(t, migrations.Migrate(ctx, conn), "the later migrations, which the service needs")

	e := &auditEnv{url: url, clock: vaulttest.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)), logs: &logBuffer{}}
	e.svc = e.service(t)
	e.pool = vaulttest.Pool(t, e.url)
	a := e.actor(t)
	e.tokenize(t, a, 1)
	var id int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT max(id) FROM audit_events`).Scan(&id))
	assert.Greater(t, id, maxID, "ids continue after the moved rows")
	linked, err := e.svc.ChainAudit(ctx) // what `audit verify` does first: link the old rows into their v1 chain
	require.NoError(t, err)
	assert.Equal(t, 2, linked)
	r := e.verify(t, nil)
	require.True(t, r.OK, "breaks: %+v", r.Breaks)
	assert.Zero(t, r.Unchained)
	_, err = e.pool.Exec(ctx, `UPDATE audit_events SET detail = '{}' WHERE tenant_id = $1`, a.TenantID)
	assert.ErrorContains(t, err, "audit rows are written once", "the trigger guards every partition")
}

// emptyDatabase creates a database without any migration and returns its
// URL; it is dropped when the test ends.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dbURL)
	require.NoError(t, err)
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer admin.Close(ctx)
	name := "cardvault_test_upgrade_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	return withDatabase(t, dbURL, name)
}
