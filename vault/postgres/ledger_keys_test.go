package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// TestJobLedgersKeepTheGuaranteesTheirForeignKeysGave: migration 028
// replaced the foreign keys from import_items, import_file_rows and
// export_items to their jobs with statement and row triggers; each
// guarantee the keys gave still holds.
func TestJobLedgersKeepTheGuaranteesTheirForeignKeysGave(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	imp := e.importJob(t, vault.ImportRunning, "ledger_keys", 2)
	seedFileRows(t, e, imp, 3)
	exp := e.exportJob(t, 2)

	tests := []struct {
		name, constraint, sql string
		args                  []any
	}{
		{"an item of no import job", "import_items_job_id_fkey", `INSERT INTO import_items
			(job_id, payment_method, status, next_attempt_at, updated_at)
			VALUES (gen_random_uuid(), 'pm_orphan', 'pending', now(), now())`, nil},
		{"a file row of no import job", "import_file_rows_job_id_fkey", `INSERT INTO import_file_rows
			(job_id, row_number, status) VALUES (gen_random_uuid(), 1, 'failed')`, nil},
		{"an item of no export job", "export_items_job_id_fkey", `INSERT INTO export_items
			(job_id, token_id, status, next_attempt_at, updated_at)
			VALUES (gen_random_uuid(), gen_random_uuid(), 'pending', now(), now())`, nil},
		{"an import item moved to no job", "import_items_job_id_fkey",
			`UPDATE import_items SET job_id = gen_random_uuid() WHERE job_id = $1`, []any{imp}},
		{"a file row moved to no job", "import_file_rows_job_id_fkey",
			`UPDATE import_file_rows SET job_id = gen_random_uuid() WHERE job_id = $1`, []any{imp}},
		{"an export item moved to no job", "export_items_job_id_fkey",
			`UPDATE export_items SET job_id = gen_random_uuid() WHERE job_id = $1`, []any{exp}},
		{"an import job renamed under its ledger", "import_items_job_id_fkey",
			`UPDATE import_jobs SET id = gen_random_uuid() WHERE id = $1`, []any{imp}},
		{"an export job renamed under its ledger", "export_items_job_id_fkey",
			`UPDATE export_jobs SET id = gen_random_uuid() WHERE id = $1`, []any{exp}},
	}
	for _, tt := range tests {
		_, err := e.pool.Exec(ctx, tt.sql, tt.args...)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", tt.name, err)
		assert.Equal(t, "23503", pgErr.Code, tt.name)
		assert.Equal(t, tt.constraint, pgErr.ConstraintName, tt.name)
	}

	assertWritingALedgerRowLocksItsJob(t, e, imp)

	_, err := e.pool.Exec(ctx, `DELETE FROM import_jobs WHERE id = $1`, imp)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `DELETE FROM export_jobs WHERE id = $1`, exp)
	require.NoError(t, err)
	var left int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM import_items WHERE job_id = $1)
		+ (SELECT count(*) FROM import_file_rows WHERE job_id = $1)
		+ (SELECT count(*) FROM export_items WHERE job_id = $2)`, imp, exp).Scan(&left))
	assert.Zero(t, left, "deleting a job deletes its ledger rows")
}

// assertWritingALedgerRowLocksItsJob: while a transaction that wrote a
// file row of job is open, the job cannot be locked for deletion (the KEY
// SHARE lock the foreign key took).
func assertWritingALedgerRowLocksItsJob(t *testing.T, e *env, job uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `INSERT INTO import_file_rows (job_id, row_number, status) VALUES ($1, 1000, 'failed')`, job)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `SELECT 1 FROM import_jobs WHERE id = $1 FOR UPDATE NOWAIT`, job)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "the job could be locked for deletion: %v", err)
	assert.Equal(t, "55P03", pgErr.Code, "lock_not_available")
}
