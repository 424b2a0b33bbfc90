package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/internal/metrics"
)

// The queries behind MetricsState: totals over every tenant, each reading
// a partial index or a small table. $1 is the vault's clock, $2 the
// cryptoperiod in seconds.
const (
	stateTenantsSQL = `SELECT count(*) FROM tenants WHERE destroyed_at IS NULL`
	stateOutboxSQL  = `SELECT count(*), coalesce(extract(epoch FROM $1::timestamptz - min(created_at)), 0)::float8
		FROM webhook_events WHERE delivered_at IS NULL AND given_up_at IS NULL`
	stateAuditSQL = `SELECT count(*), coalesce(extract(epoch FROM $1::timestamptz - min(occurred_at)), 0)::float8
		FROM audit_events WHERE chain_seq IS NULL`
	stateImportsSQL = `SELECT status, count(*), coalesce(sum(total), 0)::bigint,
		coalesce(sum(successes + failures + skipped), 0)::bigint FROM import_jobs GROUP BY status`
	stateKeyJobsSQL = `SELECT status, count(*), coalesce(sum(total), 0)::bigint, coalesce(sum(done), 0)::bigint
		FROM key_jobs GROUP BY status`
	stateDataKeysSQL = `SELECT count(*) FILTER (WHERE created_at < $1::timestamptz - make_interval(secs => $2)),
		coalesce(extract(epoch FROM $1::timestamptz - min(created_at)), 0)::float8
		FROM tenant_key_versions WHERE purpose = 'data' AND state IN ('primary', 'active')`
)

// MetricsState reads the vault's state for the metrics: the outbox, the
// audit chain's lag, import and key jobs, the age of the data keys in use
// (counting as overdue those older than cryptoperiod) and the tenants the
// root KEK cannot open, in one round trip. Ages are never negative. It
// returns a domain error when the database fails.
func (s *Service) MetricsState(ctx context.Context, cryptoperiod time.Duration) (metrics.State, error) {
	st := metrics.State{ImportJobs: map[string]int64{}, KeyJobs: map[string]int64{}, MismatchedTenants: s.keys.mismatchedCount()}
	now := s.clock()
	b := &pgx.Batch{}
	b.Queue(stateTenantsSQL).QueryRow(func(r pgx.Row) error { return r.Scan(&st.Tenants) })
	b.Queue(stateOutboxSQL, now).QueryRow(func(r pgx.Row) error { return scanCountAge(r, &st.OutboxPending, &st.OutboxOldest) })
	b.Queue(stateAuditSQL, now).QueryRow(func(r pgx.Row) error { return scanCountAge(r, &st.AuditUnchained, &st.AuditOldestUnchained) })
	b.Queue(stateImportsSQL).Query(func(rows pgx.Rows) error {
		return scanJobs(rows, st.ImportJobs, activeImport, &st.ImportActiveItems, &st.ImportActiveSettled)
	})
	b.Queue(stateKeyJobsSQL).Query(func(rows pgx.Rows) error {
		return scanJobs(rows, st.KeyJobs, activeKeyJob, &st.ReencryptTotal, &st.ReencryptDone)
	})
	b.Queue(stateDataKeysSQL, now, cryptoperiod.Seconds()).QueryRow(func(r pgx.Row) error {
		return scanCountAge(r, &st.DataKeysOverdue, &st.DataKeyMaxAge)
	})
	err := s.db.SendBatch(ctx, b).Close()
	return st, dbError(err, "state")
}

// activeImport and activeKeyJob tell the statuses of jobs under way.
func activeImport(status string) bool { return status == "preparing" || status == "running" }
func activeKeyJob(status string) bool { return status == "pending" || status == "running" }

// scanCountAge scans a count and an age in seconds, clamping the age at 0
// (the vault's clock may trail the database's).
func scanCountAge(r pgx.Row, n *int64, age *time.Duration) error {
	var secs float64
	err := r.Scan(n, &secs)
	*age = time.Duration(max(secs, 0) * float64(time.Second))
	return err
}

// scanJobs counts jobs by status into byStatus and adds up the totals and
// progress of the active ones.
func scanJobs(rows pgx.Rows, byStatus map[string]int64, active func(string) bool, total, done *int64) error {
	for rows.Next() {
		var status string
		var n, t, d int64
		if err := rows.Scan(&status, &n, &t, &d); err != nil {
			return err
		}
		byStatus[status] = n
		if active(status) {
			*total, *done = *total+t, *done+d
		}
	}
	return rows.Err()
}

// mismatchedCount returns how many tenants' last load failed with
// kek_mismatch.
func (k *keyring) mismatchedCount() int64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return int64(len(k.mismatched))
}
