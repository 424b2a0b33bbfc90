package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// retentionFixture is one tenant's rows of every kind the retention prune
// deletes, old and new, finished and in flight.
type retentionFixture struct {
	keep, gone map[string][]string // table -> ids expected to stay / to go
}

// seedRetention writes, for e's tenant, per kind: n finished rows older
// than the retention (they go), a finished row newer than it, and an
// in-flight row older than it (both stay). Each old webhook event has two
// delivery attempts, each old import job three items and three file rows
// (a Stripe job has no file rows; the fixture keeps both ledgers in one
// job), each old export job three items.
func seedRetention(t *testing.T, e *env, r vault.Retention, n int) retentionFixture {
	t.Helper()
	ctx := context.Background()
	tenant := e.actor.TenantID
	now := e.clock.Now()
	old := func(d time.Duration) time.Time { return now.Add(-d - time.Hour) }
	newer := func(d time.Duration) time.Time { return now.Add(-d + time.Hour) }
	f := retentionFixture{keep: map[string][]string{}, gone: map[string][]string{}}
	add := func(m map[string][]string, table, id string) { m[table] = append(m[table], id) }
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := e.pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	event := func(at time.Time, done bool) string {
		id := "evt_" + strings26(uuid.New())
		var delivered *time.Time
		if done {
			delivered = &at
		}
		exec(`INSERT INTO webhook_events (id, tenant_id, type, payload, created_at, delivered_at)
			VALUES ($1, $2, 'token.created', '{}', $3, $4)`, id, tenant, at, delivered)
		for a := 1; a <= 2; a++ {
			exec(`INSERT INTO webhook_deliveries (event_id, tenant_id, attempt, attempted_at, url, duration_ms, outcome)
				VALUES ($1, $2, $3, $4, 'https://example.test/hook', 1, 'retrying')`, id, tenant, a, at)
		}
		return id
	}
	importJob := func(at time.Time, status string) string {
		id := uuid.New()
		exec(`INSERT INTO import_jobs (id, tenant_id, provider, status, created_at, updated_at)
			VALUES ($1, $2, 'stripe', $3, $4, $4)`, id, tenant, status, at)
		for i := range 3 {
			exec(`INSERT INTO import_items (job_id, payment_method, status, next_attempt_at, updated_at)
				VALUES ($1, $2, 'succeeded', $3, $3)`, id, fmt.Sprintf("pm_%d", i), at)
		}
		seedFileRows(t, e, id, 3)
		return id.String()
	}
	exportJob := func(at time.Time, status string) string {
		id := uuid.New()
		exec(`INSERT INTO export_jobs (id, tenant_id, destination_id, url, rate_limit, status, created_at, updated_at)
			VALUES ($1, $2, 'fd_1', 'https://vault.example.test/tokens', 10, $3, $4, $4)`, id, tenant, status, at)
		for range 3 {
			exec(`INSERT INTO export_items (job_id, token_id, status, next_attempt_at, updated_at)
				VALUES ($1, $2, 'succeeded', $3, $3)`, id, uuid.New(), at)
		}
		return id.String()
	}
	keyJob := func(at time.Time, status, kind string) string {
		id := uuid.New()
		exec(`INSERT INTO key_jobs (id, tenant_id, kind, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $5)`, id, tenant, kind, status, at)
		return id.String()
	}
	for range n {
		add(f.gone, "webhook_events", event(old(r.Webhooks), true))
		add(f.gone, "import_jobs", importJob(old(r.Imports), "finished"))
		add(f.gone, "export_jobs", exportJob(old(r.Exports), "finished"))
		add(f.gone, "key_jobs", keyJob(old(r.KeyJobs), "finished", "reencrypt"))
	}
	add(f.gone, "import_jobs", importJob(old(r.Imports), "failed"))
	add(f.gone, "export_jobs", exportJob(old(r.Exports), "aborted"))
	add(f.keep, "webhook_events", event(newer(r.Webhooks), true))
	add(f.keep, "webhook_events", event(old(r.Webhooks), false)) // not delivered yet
	add(f.keep, "import_jobs", importJob(newer(r.Imports), "finished"))
	add(f.keep, "import_jobs", importJob(old(r.Imports), "running"))
	add(f.keep, "export_jobs", exportJob(newer(r.Exports), "failed"))
	add(f.keep, "export_jobs", exportJob(old(r.Exports), "running"))
	add(f.keep, "key_jobs", keyJob(newer(r.KeyJobs), "finished", "reencrypt"))
	add(f.keep, "key_jobs", keyJob(old(r.KeyJobs), "running", "refingerprint"))
	return f
}

// seedFileRows writes n rows of a file import's ledger for job.
func seedFileRows(t *testing.T, e *env, job uuid.UUID, n int) {
	t.Helper()
	_, err := e.pool.Exec(context.Background(), `INSERT INTO import_file_rows (job_id, row_number, old_id, status, token_id)
		SELECT $1, g, 'card_' || g, 'created', gen_random_uuid() FROM generate_series(1, $2::int) g`, job, n)
	require.NoError(t, err)
}

// strings26 returns 26 characters of the base32 alphabet webhook event ids
// use, made from id.
func strings26(id uuid.UUID) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	out := make([]byte, 26)
	for i := range out {
		out[i] = alphabet[int(id[i%16]+byte(i))%32]
	}
	return string(out)
}

// present returns which of ids are still rows of table.
func present(t *testing.T, e *env, table string, ids []string) []string {
	t.Helper()
	var out []string
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT coalesce(array_agg(id::text ORDER BY id::text), '{}') FROM `+table+` WHERE id::text = ANY($1)`, ids).Scan(&out))
	return out
}

// TestRetentionPrunesOnlyFinishedRowsPastTheirRetention: rows older than
// their retention go, with their delivery attempts, items and file rows;
// newer rows and rows still in flight (an undelivered event, a running
// import, a running export, a running key job), however old, stay; one audit row with the counts
// records the pass.
func TestRetentionPrunesOnlyFinishedRowsPastTheirRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := vault.Retention{Webhooks: 30 * 24 * time.Hour, Imports: 90 * 24 * time.Hour, Exports: 90 * 24 * time.Hour,
		KeyJobs: 365 * 24 * time.Hour}
	f := seedRetention(t, e, r, 3)

	c, err := postgres.PruneRetainedInBatches(ctx, e.svc, r, 2)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, c.WebhookEvents, int64(3))
	assert.GreaterOrEqual(t, c.WebhookDeliveries, int64(6))
	assert.GreaterOrEqual(t, c.ImportJobs, int64(4))
	assert.GreaterOrEqual(t, c.ImportItems, int64(12))
	assert.GreaterOrEqual(t, c.ImportFileRows, int64(12))
	assert.GreaterOrEqual(t, c.ExportJobs, int64(4))
	assert.GreaterOrEqual(t, c.ExportItems, int64(12))
	assert.GreaterOrEqual(t, c.KeyJobs, int64(3))
	for table, ids := range f.gone {
		assert.Empty(t, present(t, e, table, ids), table)
	}
	for table, ids := range f.keep {
		assert.ElementsMatch(t, ids, present(t, e, table, ids), table)
	}
	var left int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE event_id = ANY($1)`,
		f.gone["webhook_events"]).Scan(&left))
	assert.Zero(t, left)
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM import_items WHERE job_id::text = ANY($1)`,
		f.keep["import_jobs"]).Scan(&left))
	assert.Equal(t, 6, left, "the items of kept jobs stay")
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM import_file_rows WHERE job_id::text = ANY($1)`,
		f.keep["import_jobs"]).Scan(&left))
	assert.Equal(t, 6, left, "the file rows of kept jobs stay")
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM export_items WHERE job_id::text = ANY($1)`,
		f.keep["export_jobs"]).Scan(&left))
	assert.Equal(t, 6, left, "the items of kept export jobs stay")

	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events
		WHERE action = 'retention.prune' AND tenant_id IS NULL ORDER BY id DESC LIMIT 1`).Scan(&detail))
	assert.EqualValues(t, c.WebhookEvents, detail["webhook_events"])
	assert.EqualValues(t, c.ImportItems, detail["import_items"])
	assert.EqualValues(t, c.ImportFileRows, detail["import_file_rows"])
	assert.EqualValues(t, c.ExportJobs, detail["export_jobs"])
	assert.EqualValues(t, c.ExportItems, detail["export_items"])
	assert.Contains(t, detail, "rows_per_second")

	again, err := postgres.PruneRetainedInBatches(ctx, e.svc, r, 2)
	require.NoError(t, err)
	assert.Zero(t, again.Total(), "nothing left to prune")
}

// TestRetentionPruneStatementsAreBounded: one statement of each kind
// deletes at most its batch, however many rows are due.
func TestRetentionPruneStatementsAreBounded(t *testing.T) {
	e := newEnv(t)
	r := vault.Retention{Webhooks: 30 * 24 * time.Hour, Imports: 90 * 24 * time.Hour, Exports: 90 * 24 * time.Hour,
		KeyJobs: 365 * 24 * time.Hour}
	seedRetention(t, e, r, 5)
	c, err := postgres.PruneRetainedOnce(context.Background(), e.svc, r, 2)
	require.NoError(t, err)
	for name, n := range map[string]int64{"webhook deliveries": c.WebhookDeliveries, "webhook events": c.WebhookEvents,
		"import items": c.ImportItems, "import file rows": c.ImportFileRows, "export items": c.ExportItems,
		"key jobs": c.KeyJobs} {
		assert.Equal(t, int64(2), n, name)
	}
	assert.Zero(t, c.ImportJobs, "a job goes only once its items are gone")
	assert.Zero(t, c.ExportJobs, "an export job goes only once its items are gone")
}

// TestRetentionPrunesAFileImportLedgerInBatches: a file import's ledger
// longer than the batch is deleted a batch per statement, never by the
// cascade of its job's delete (the job goes only once its rows are gone);
// chunks left by a job aborted without them (a tenant's shred) go too; the
// audit row counts what went. The retentions are ten years, so that only
// this test's rows are due and the counts are exact.
func TestRetentionPrunesAFileImportLedgerInBatches(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const decade = 3650 * 24 * time.Hour
	r := vault.Retention{Webhooks: decade, Imports: decade, Exports: decade, KeyJobs: decade}
	fileJob := func(at time.Time, status string, rows, chunks int) uuid.UUID {
		id := uuid.New()
		_, err := e.pool.Exec(ctx, `INSERT INTO import_jobs (id, tenant_id, provider, status, file_format, created_at, updated_at)
			VALUES ($1, $2, 'file', $3, 'jsonl', $4, $4)`, id, e.actor.TenantID, status, at)
		require.NoError(t, err)
		seedFileRows(t, e, id, rows)
		_, err = e.pool.Exec(ctx, `INSERT INTO import_file_chunks (job_id, seq, data)
			SELECT $1, g, '\x00'::bytea FROM generate_series(1, $2::int) g`, id, chunks)
		require.NoError(t, err)
		return id
	}
	old, young := e.clock.Now().Add(-decade-time.Hour), e.clock.Now().Add(-decade+time.Hour)
	big := fileJob(old, "finished", 7, 0)
	shredded := fileJob(old, "aborted", 0, 3)
	kept := []string{fileJob(young, "finished", 5, 0).String(), fileJob(old, "running", 5, 2).String()}
	rowsOf := func(job string) (n int) {
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM import_file_rows WHERE job_id::text = $1`, job).Scan(&n))
		return n
	}

	c, err := postgres.PruneRetainedOnce(ctx, e.svc, r, 3)
	require.NoError(t, err)
	assert.Equal(t, vault.PruneCounts{ImportFileRows: 3, ImportFileChunks: 3, ImportJobs: 1}, c)
	assert.Equal(t, []string{big.String()}, present(t, e, "import_jobs", []string{big.String(), shredded.String()}),
		"the job with rows left stays; the one whose chunks are gone goes")
	assert.Equal(t, 4, rowsOf(big.String()))

	c, err = postgres.PruneRetainedInBatches(ctx, e.svc, r, 3)
	require.NoError(t, err)
	assert.Equal(t, vault.PruneCounts{ImportFileRows: 4, ImportJobs: 1}, c, "4 rows in two statements of 3, then the job")
	assert.Empty(t, present(t, e, "import_jobs", []string{big.String()}))
	assert.Zero(t, rowsOf(big.String()))
	assert.ElementsMatch(t, kept, present(t, e, "import_jobs", kept))
	assert.Equal(t, 5, rowsOf(kept[0]))
	assert.Equal(t, 5, rowsOf(kept[1]))

	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events
		WHERE action = 'retention.prune' AND tenant_id IS NULL ORDER BY id DESC LIMIT 1`).Scan(&detail))
	assert.EqualValues(t, 4, detail["import_file_rows"])
	assert.EqualValues(t, 1, detail["import_jobs"])
	assert.EqualValues(t, 0, detail["import_file_chunks"])
}
