package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// AuditWrites is what PostgreSQL's statistics say the run did to the audit
// table: every audit row must be complete when inserted, so no row is ever
// updated.
type AuditWrites struct {
	Rows     int64 `json:"rows"`     // audit rows in the table after the run
	Inserted int64 `json:"inserted"` // n_tup_ins of the audit table(s)
	Updated  int64 `json:"updated"`  // n_tup_upd of the audit table(s)
}

// TokenUpdates is what PostgreSQL's statistics say the run did to the
// token table's rows: how many row versions it rewrote, and how many of
// those within their page with no index entry (HOT: a reveal's CVC
// destruction, a sweep), the rest being card updates, which change indexed
// columns.
type TokenUpdates struct {
	Updated int64 `json:"updated"` // n_tup_upd of tokens
	HOT     int64 `json:"hot"`     // n_tup_hot_upd of tokens
}

// readTokenUpdates reads the token table's update statistics; call it
// after readAuditWrites, which waits for the vault's backends to flush
// theirs. It returns the database's error.
func readTokenUpdates(ctx context.Context, pool *pgxpool.Pool) (TokenUpdates, error) {
	var u TokenUpdates
	err := pool.QueryRow(ctx, `SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint
		FROM pg_stat_user_tables WHERE relname = 'tokens'`).Scan(&u.Updated, &u.HOT)
	return u, err
}

// auditStatsWait bounds the wait for the vault's backends to flush their
// statistics (PostgreSQL does so at most about ten seconds after their
// last transaction).
const auditStatsWait = 20 * time.Second

// readAuditWrites reads the audit table's write statistics once they
// account for every row in it (or after auditStatsWait). It returns the
// database's error.
func readAuditWrites(ctx context.Context, pool *pgxpool.Pool) (AuditWrites, error) {
	var w AuditWrites
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&w.Rows); err != nil {
		return w, err
	}
	deadline := time.Now().Add(auditStatsWait)
	for {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return w, err
		}
		_, err = conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		if err == nil {
			err = conn.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0)::bigint, coalesce(sum(n_tup_upd), 0)::bigint
				FROM pg_stat_user_tables WHERE relname LIKE 'audit_events%'`).Scan(&w.Inserted, &w.Updated)
		}
		conn.Release()
		if err != nil || w.Inserted >= w.Rows || time.Now().After(deadline) {
			return w, err
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
