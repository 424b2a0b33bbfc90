package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// PostgreSQL plans a prepared statement anew at each execution (a custom
// plan) when its generic plan costs more than the custom plans it has
// made. A batch statement over unnest() arrays is costed for ten rows in
// its generic plan, so for the smaller batches it mostly runs, PostgreSQL
// planned the update, forward, forward outcome and import attempt batches
// at nearly every call: pg_stat_statements (track_planning) measured
// 0.2–0.5 ms of planning a call, about a seventh of PostgreSQL's CPU per
// update and per forward.
// Their plans do not depend on the arrays' lengths (index probes per
// element), so those transactions keep the generic plan.

// genericPlansSQL makes the statements after it in its transaction run
// with their generic plans.
const genericPlansSQL = `SET LOCAL plan_cache_mode = force_generic_plan`

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

// queryGeneric runs sql with args in a transaction of its own with its
// generic plan (BEGIN, genericPlansSQL, sql and COMMIT in one round trip)
// and gives its rows to read. It returns the first error, untranslated.
func (s *Service) queryGeneric(ctx context.Context, sql string, args []any, read func(pgx.Rows) error) error {
	var b pgx.Batch
	queueBeginGeneric(&b)
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	br := s.db.SendBatch(ctx, &b)
	err := readGeneric(br, read)
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	return err
}

// readGeneric reads queryGeneric's answers, the statement's rows by read.
func readGeneric(br pgx.BatchResults, read func(pgx.Rows) error) error {
	if err := readBeginGeneric(br); err != nil {
		return err
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	if err := read(rows); err != nil {
		return err
	}
	_, err = br.Exec()
	return err
}
