package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// ClaimRowsRead returns how many rows of import_items the claim of n items
// due at now reads (every scan's rows, kept or filtered out), measured with
// EXPLAIN ANALYZE in a transaction that is rolled back.
func ClaimRowsRead(ctx context.Context, s *Service, n int, now time.Time) (int, error) {
	return explainRowsRead(ctx, s, "import_items", claimItemsSQL, []any{now, n, "explain", now.Add(time.Minute)})
}

// rowsRead returns how many rows of table the plan of an EXPLAIN (ANALYZE,
// FORMAT JSON) answer read.
func rowsRead(explained []byte, table string) (int, error) {
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal(explained, &plans); err != nil {
		return 0, err
	}
	return plans[0].Plan.rowsRead(table), nil
}

// ItemLookupRowsRead returns, by statement, how many rows of its item table
// each statement that looks up owner's leased items by their key reads
// (EXPLAIN ANALYZE, each in a transaction that is rolled back): an attempt
// batch and a lease renewal of the import items ws, and a send counted, an
// attempt written and a lease renewal of the export item x.
func ItemLookupRowsRead(ctx context.Context, s *Service, owner string, ws []vault.ItemWork, x vault.ExportWork) (map[string]int, error) {
	now := s.clock()
	n := len(ws)
	jobs, pms, owners := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	statuses, tokens, errs := make([]string, n), make([]uuid.UUID, n), make([]string, n)
	next, throttled := make([]time.Time, n), make([]int32, n)
	for i, w := range ws {
		jobs[i], pms[i], owners[i], statuses[i], next[i] = w.JobID, w.PaymentMethod, owner, "failed", now
	}
	lookups := []struct {
		name, table, sql string
		args             []any
	}{
		{"import attempts", "import_items", writeAttemptsSQL, []any{jobs, pms, owners, statuses, tokens, errs, next, throttled, now}},
		{"import lease renewal", "import_items", renewItemLeasesSQL, []any{owner, now.Add(time.Minute), jobs, pms}},
		{"export send counted", "export_items", countExportSendSQL, []any{x.JobID, x.TokenID, owner, now}},
		{"export attempt", "export_items", recordExportAttemptSQL, []any{x.JobID, x.TokenID, owner, "failed", "", nil, now, now}},
		{"export lease renewal", "export_items", renewExportLeasesSQL, []any{owner, now.Add(time.Minute), []uuid.UUID{x.JobID}, []uuid.UUID{x.TokenID}}},
	}
	out := map[string]int{}
	for _, l := range lookups {
		read, err := explainRowsRead(ctx, s, l.table, l.sql, l.args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		out[l.name] = read
	}
	return out, nil
}

// explainRowsRead runs sql with args under EXPLAIN ANALYZE in a
// transaction it rolls back and returns how many rows of table it read.
func explainRowsRead(ctx context.Context, s *Service, table, sql string, args []any) (int, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
	var out []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+sql, args...).Scan(&out); err != nil {
		return 0, err
	}
	return rowsRead(out, table)
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node rowsRead reads.
type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// rowsRead sums the rows the scans of table under p read, kept or
// filtered out.
func (p planNode) rowsRead(table string) int {
	n := 0
	if p.Relation == table {
		n = int(p.Rows*p.Loops + p.Removed)
	}
	for _, c := range p.Plans {
		n += c.rowsRead(table)
	}
	return n
}

// WriteAttempts writes the attempts ats of owner on items ws as one batch,
// as concurrent forwarders' RecordAttempt calls would be, and returns per
// item whether it was still leased to owner and so written.
func WriteAttempts(ctx context.Context, s *Service, owner string, ws []vault.ItemWork, ats []vault.Attempt) ([]bool, error) {
	batch := make([]*recordedAttempt, len(ws))
	for i, w := range ws {
		batch[i] = &recordedAttempt{owner: owner, job: w.JobID, pm: w.PaymentMethod, status: ats[i].Status,
			token: ats[i].TokenID, err: ats[i].Error, retryAt: s.clock().Add(ats[i].RetryAfter),
			throttled: boolInt(ats[i].Throttled)}
	}
	if err := s.writeAttempts(ctx, batch); err != nil {
		return nil, err
	}
	written := make([]bool, len(batch))
	for i, a := range batch {
		written[i] = a.written
	}
	return written, nil
}

// PreparedPlannedNow returns how many statements prepared on the
// connection s's pool hands out (the only one, in a pool of one) are
// statements run with planNow: the item claims and the forward outcome
// update.
func PreparedPlannedNow(ctx context.Context, s *Service) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = ANY($1)`,
		[]string{claimItemsSQL, claimExportSQL, writeOutcomesSQL}).Scan(&n)
	return n, err
}

// WriteNoOutcomes runs the forward outcome update for no forward.
func WriteNoOutcomes(ctx context.Context, s *Service) error {
	_, err := s.writeOutcomes(ctx, []uuid.UUID{}, []string{}, []string{}, []*int32{}, []int64{}, []string{}, []string{},
		[][]byte{}, [][]byte{}, []int64{})
	return err
}

// PreparedStatements returns how many statements are prepared on the
// connection s's pool hands out (the only one, in a pool of one).
func PreparedStatements(ctx context.Context, s *Service) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&n)
	return n, err
}
