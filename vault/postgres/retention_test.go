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
// delivery attempts and each old import job three items.
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
		add(f.gone, "key_jobs", keyJob(old(r.KeyJobs), "finished", "reencrypt"))
	}
	add(f.gone, "import_jobs", importJob(old(r.Imports), "failed"))
	add(f.keep, "webhook_events", event(newer(r.Webhooks), true))
	add(f.keep, "webhook_events", event(old(r.Webhooks), false)) // not delivered yet
	add(f.keep, "import_jobs", importJob(newer(r.Imports), "finished"))
	add(f.keep, "import_jobs", importJob(old(r.Imports), "running"))
	add(f.keep, "key_jobs", keyJob(newer(r.KeyJobs), "finished", "reencrypt"))
	add(f.keep, "key_jobs", keyJob(old(r.KeyJobs), "running", "refingerprint"))
	return f
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
// their retention go, with their delivery attempts and items; newer rows
// and rows still in flight (an undelivered event, a running import, a
// running key job), however old, stay; one audit row with the counts
// records the pass.
func TestRetentionPrunesOnlyFinishedRowsPastTheirRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := vault.Retention{Webhooks: 30 * 24 * time.Hour, Imports: 90 * 24 * time.Hour, KeyJobs: 365 * 24 * time.Hour}
	f := seedRetention(t, e, r, 3)

	c, err := postgres.PruneRetainedInBatches(ctx, e.svc, r, 2)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, c.WebhookEvents, int64(3))
	assert.GreaterOrEqual(t, c.WebhookDeliveries, int64(6))
	assert.GreaterOrEqual(t, c.ImportJobs, int64(4))
	assert.GreaterOrEqual(t, c.ImportItems, int64(12))
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

	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events
		WHERE action = 'retention.prune' AND tenant_id IS NULL ORDER BY id DESC LIMIT 1`).Scan(&detail))
	assert.EqualValues(t, c.WebhookEvents, detail["webhook_events"])
	assert.EqualValues(t, c.ImportItems, detail["import_items"])
	assert.Contains(t, detail, "rows_per_second")

	again, err := postgres.PruneRetainedInBatches(ctx, e.svc, r, 2)
	require.NoError(t, err)
	assert.Zero(t, again.Total(), "nothing left to prune")
}

// TestRetentionPruneStatementsAreBounded: one statement of each kind
// deletes at most its batch, however many rows are due.
func TestRetentionPruneStatementsAreBounded(t *testing.T) {
	e := newEnv(t)
	r := vault.Retention{Webhooks: 30 * 24 * time.Hour, Imports: 90 * 24 * time.Hour, KeyJobs: 365 * 24 * time.Hour}
	seedRetention(t, e, r, 5)
	c, err := postgres.PruneRetainedOnce(context.Background(), e.svc, r, 2)
	require.NoError(t, err)
	for name, n := range map[string]int64{"webhook deliveries": c.WebhookDeliveries, "webhook events": c.WebhookEvents,
		"import items": c.ImportItems, "key jobs": c.KeyJobs} {
		assert.Equal(t, int64(2), n, name)
	}
	assert.Zero(t, c.ImportJobs, "a job goes only once its items are gone")
}
