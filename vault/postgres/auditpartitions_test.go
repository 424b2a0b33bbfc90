package postgres_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// newestPartition returns the partition holding the tenant's newest row.
func (e *auditEnv) newestPartition(t *testing.T, tenant any) string {
	t.Helper()
	var name string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT tableoid::regclass::text FROM audit_events
		WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1`, tenant).Scan(&name))
	return name
}

func (e *auditEnv) tableExists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok))
	return ok
}

func TestAuditPartitionsAreCreatedAheadAndHoldTheirMonth(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 3 {
		m := time.Date(now.Year(), now.Month()+time.Month(i), 1, 0, 0, 0, 0, time.UTC)
		assert.True(t, e.tableExists(t, "audit_events_"+m.Format("2006_01")), "migrate created the partition of %s", m.Format("2006-01"))
	}
	assert.True(t, e.tableExists(t, "audit_events_default"))

	// The vault creates its clock's month and the next two (the env's clock is in January 2026).
	made, inDefault, err := e.svc.EnsureAuditPartitions(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, made)
	assert.Zero(t, inDefault)
	for _, m := range []string{"2026_01", "2026_02", "2026_03"} {
		assert.True(t, e.tableExists(t, "audit_events_"+m))
	}
	made, _, err = e.svc.EnsureAuditPartitions(ctx)
	require.NoError(t, err)
	assert.Zero(t, made, "nothing new to create")

	a := e.actor(t)
	e.tokenize(t, a, 1)
	assert.Equal(t, "audit_events_2026_01", e.newestPartition(t, a.TenantID))
	e.clock.Advance(30 * 24 * time.Hour) // February 9th
	e.tokenize(t, a, 1)
	assert.Equal(t, "audit_events_2026_02", e.newestPartition(t, a.TenantID))
	e.clock.Advance(90 * 24 * time.Hour) // May: no partition yet
	e.tokenize(t, a, 1)
	assert.Equal(t, "audit_events_default", e.newestPartition(t, a.TenantID))
	made, inDefault, err = e.svc.EnsureAuditPartitions(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, made, "June and July; May's rows stay in the default partition")
	assert.Equal(t, int64(1), inDefault, "the row whose month had no partition are counted")
	assert.NotEmpty(t, e.logs.records(t, "audit rows in the default partition: their month had no partition"))
	assert.True(t, e.verify(t, nil).OK)
}

func TestAuditRetentionDropsAVerifiedMonth(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.EnsureAuditPartitions(ctx) // January to March 2026
	require.NoError(t, err)
	a := e.actor(t)
	e.tokenize(t, a, 20) // January 10th
	e.failAuth(t)
	var january int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events_2026_01`).Scan(&january))
	require.Greater(t, january, int64(20))
	e.clock.Advance(30 * 24 * time.Hour) // February 9th
	e.tokenize(t, a, 3)
	retention := 5 * 24 * time.Hour // cutoff February 4th: January is entirely older

	drops, err := e.svc.DropAuditPartitions(ctx, retention)
	assert.Empty(t, drops)
	assert.Equal(t, vault.KindConflict, vault.ErrorKind(err), "no verified checkpoint covers January: %v", err)
	assert.ErrorContains(t, err, "no verified checkpoint covers")
	assert.True(t, e.tableExists(t, "audit_events_2026_01"), "refused: the month is kept")
	n, err := e.svc.PruneAudit(ctx, retention)
	require.NoError(t, err)
	assert.Zero(t, n, "nor is it pruned row by row")

	require.True(t, e.verify(t, nil).OK) // the verified checkpoint
	_, err = e.svc.WriteAuditCheckpoints(ctx, nil)
	require.NoError(t, err)
	exported, err := e.svc.AuditCheckpoints(ctx, nil) // checkpoints naming January's rows, kept outside
	require.NoError(t, err)
	require.NotEmpty(t, exported)
	drops, err = e.svc.DropAuditPartitions(ctx, retention)
	require.NoError(t, err)
	require.Len(t, drops, 1)
	assert.Equal(t, "audit_events_2026_01", drops[0].Name)
	assert.Equal(t, january, drops[0].Rows)
	assert.Zero(t, drops[0].Deleted)
	assert.False(t, e.tableExists(t, "audit_events_2026_01"), "the month's table is dropped")

	// No row was deleted anywhere: the month went as a table. Statistics
	// reach the shared counters when a backend flushes them.
	var ins, del int64
	var feb int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&feb))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.pool.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		require.NoError(t, err)
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0)::bigint, coalesce(sum(n_tup_del), 0)::bigint
			FROM pg_stat_user_tables WHERE relname LIKE 'audit_events%'`).Scan(&ins, &del))
		if ins >= feb || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.GreaterOrEqual(t, ins, feb, "the statistics saw the remaining partitions' inserts")
	assert.Zero(t, del, "no DELETE ran on the audit partitions")

	// One audit.prune row per chain names the partition and its rows, and vouches for the lanes' checkpoints.
	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events WHERE tenant_id = $1 AND action = 'audit.prune'`,
		a.TenantID).Scan(&detail))
	assert.Equal(t, "audit_events_2026_01", detail["partition"])
	assert.Equal(t, float64(january), detail["partition_rows"])
	r := e.verify(t, nil)
	require.True(t, r.OK, "breaks: %+v", r.Breaks)
	assert.Equal(t, january, r.Pruned, "verify starts at the retention checkpoints")
	resumed, err := e.svc.VerifyAuditResume(ctx, nil)
	require.NoError(t, err)
	assert.True(t, resumed.OK)
	require.NoError(t, e.svc.VerifyAuditCheckpoints(ctx, exported, &r))
	assert.Empty(t, r.Breaks, "checkpoints of dropped rows are behind the retention checkpoints")

	// New rows chain on; the next pass has nothing to drop.
	e.tokenize(t, a, 1)
	drops, err = e.svc.DropAuditPartitions(ctx, retention)
	require.NoError(t, err)
	assert.Empty(t, drops)
	assert.True(t, e.verify(t, nil).OK)
}

func TestAuditPartitionDropRefusedBehindABreak(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.EnsureAuditPartitions(ctx)
	require.NoError(t, err)
	a := e.actor(t)
	e.tokenize(t, a, 10)
	e.tamper(t, `UPDATE audit_events SET detail = '{"edited":true}' WHERE id = $1`, e.rowAt(t, a.TenantID, 8))
	e.clock.Advance(30 * 24 * time.Hour)
	assert.False(t, e.verify(t, nil).OK)
	_, err = e.svc.DropAuditPartitions(ctx, 5*24*time.Hour)
	assert.Equal(t, vault.KindConflict, vault.ErrorKind(err), "the edited row is evidence: %v", err)
	assert.True(t, e.tableExists(t, "audit_events_2026_01"))
}

// TestMeasureAuditPartitionDrop seeds CARDVAULT_AUDIT_DROP_ROWS rows into
// one month and drops it, printing how long the drop took (a measurement
// for docs/performance.md, not a timed test: it asserts only what was
// dropped).
func TestMeasureAuditPartitionDrop(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("CARDVAULT_AUDIT_DROP_ROWS"))
	if rows == 0 {
		t.Skip("set CARDVAULT_AUDIT_DROP_ROWS to measure")
	}
	e := newAuditEnv(t)
	ctx := context.Background()
	e.clock.Advance(21 * 24 * time.Hour) // January 31st: seeded rows go back at most about 12 days
	_, _, err := e.svc.EnsureAuditPartitions(ctx)
	require.NoError(t, err)
	a := e.actor(t)
	start := time.Now()
	require.NoError(t, e.svc.SeedAuditEvents(ctx, a.TenantID, rows))
	t.Logf("seeded %d rows in %s", rows, time.Since(start))
	var january int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events_2026_01`).Scan(&january))
	require.GreaterOrEqual(t, january, int64(rows))
	start = time.Now()
	require.True(t, e.verify(t, nil).OK)
	t.Logf("verified in %s", time.Since(start))
	e.clock.Advance(15 * 24 * time.Hour)
	start = time.Now()
	drops, err := e.svc.DropAuditPartitions(ctx, 5*24*time.Hour)
	total := time.Since(start)
	require.NoError(t, err)
	require.Len(t, drops, 1)
	assert.Equal(t, january, drops[0].Rows)
	t.Logf("dropped %s (%d rows): detach and drop %s, checks and checkpoints included %s",
		drops[0].Name, drops[0].Rows, drops[0].Took, total)
	assert.True(t, e.verify(t, nil).OK)
}
