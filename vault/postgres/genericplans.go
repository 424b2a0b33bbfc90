package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// PostgreSQL plans a prepared statement anew at each execution (a custom
// plan) when its generic plan costs more than the custom plans it has
// made. A batch statement over unnest() arrays is costed for ten rows in
// its generic plan, so for the smaller batches it mostly runs, PostgreSQL
// planned the update and forward batches and the audited batches
// (runAudited: new tokens, replays, reads redone, reveals) at nearly every
// call: pg_stat_statements (track_planning) measured 0.2–0.6 ms of
// planning a call, about a seventh of PostgreSQL's CPU per update and per
// forward. Their generic plans execute as fast as the custom ones (index
// probes per element; measured per statement with a 100,000-token
// preload), so those transactions keep the generic plan, and so does the
// import attempt batch (importcounts.go), once its lookups could no longer
// be served by the claim index (stillPending). The forward outcome
// update's executed slower than its custom plans, and it is planned at
// every call (planNow).

// A generic plan is made once per connection and kept until the tables it
// reads are analysed again, and one made while a table is nearly empty
// reads it whole: a new vault's first batches planned each lookup of
// tokens, audit lanes and forward records as a sequential scan (or a walk
// of a whole index) joined by hash to the batch's rows, and every later
// batch on that connection then read the whole table until autovacuum
// next analysed it, which a new table waits 50 rows and a naptime for. So
// these transactions also turn off sequential scans, hash joins and merge
// joins: each of their statements looks up at most a batch of rows by
// keys that have an index, one probe per row, which is the plan at any
// size past a few pages (the 100,000-token bench's lookups were already
// so); the joins of a batch's own rows to each other become nested loops
// over at most a batch.
// Measured with `cardvault bench` on an empty database (no --preload),
// three alternating pairs: tokenize-update 1,595, 2,297, 2,311 → 2,878,
// 3,071, 2,842 updates/s, PostgreSQL's CPU per update 0.35–0.64 → 0.28–0.30
// ms, p99 27–58 → 20–24 ms.

// genericPlansSQL makes the statements after it in its transaction run
// with their generic plans, made without sequential scans, hash joins or
// merge joins.
const genericPlansSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
	set_config('enable_mergejoin', 'off', true)`

// queueBeginGeneric queues BEGIN and genericPlansSQL; readBeginGeneric
// reads their answers.
func queueBeginGeneric(b *pgx.Batch) {
	b.Queue("BEGIN")
	b.Queue(genericPlansSQL)
}

// readBeginGeneric reads the answers of queueBeginGeneric's statements and
// returns the first error.
func readBeginGeneric(br pgx.BatchResults) error {
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// inGenericTx runs sql with args and read on its rows in a transaction of
// its own, in one round trip: BEGIN and genericPlansSQL, sql, COMMIT. It
// returns the first error, read's or the driver's, after rolling back.
func (s *Service) inGenericTx(ctx context.Context, sql string, args []any, read func(pgx.Rows) error) error {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release() // a connection left inside a transaction is destroyed, never reused
	var b pgx.Batch
	queueBeginGeneric(&b)
	b.Queue(sql, args...).Query(read)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		rollback(conn)
		return err
	}
	return nil
}

// planNow, passed as a query's first argument, has PostgreSQL plan the
// statement for its tables as they are at this execution (pgx sends it as
// the unnamed statement, described in a first round trip) instead of
// running a plan cached on the connection. The statements on tables that
// fill within seconds of a job's start use it: the import and export item
// claims and the forward outcome update. A plan a connection cached while
// such a table was nearly empty, or empty according to its statistics (a
// vacuum or ANALYZE that found it so, until autovacuum analyses it again),
// read and sorted every pending item of the job at each claim
// (auto_explain: a sequential scan and a sort; 4.8 ms a claim at 10,000
// items instead of 0.3–0.7 ms through the claim index) and scanned every
// forward record for each outcome batch.
const planNow = pgx.QueryExecModeDescribeExec
