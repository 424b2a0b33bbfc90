package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// ClaimRowsRead returns how many rows of import_items the claim of n items
// due at now reads (every scan's rows, kept or filtered out), measured with
// EXPLAIN ANALYZE in a transaction that is rolled back.
func ClaimRowsRead(ctx context.Context, s *Service, n int, now time.Time) (int, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
	var out []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+claimItemsSQL, now, n, "explain", now.Add(time.Minute)).
		Scan(&out); err != nil {
		return 0, err
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal(out, &plans); err != nil {
		return 0, err
	}
	return plans[0].Plan.itemRowsRead(), nil
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node ClaimRowsRead reads.
type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// itemRowsRead sums the rows the scans of import_items under p read.
func (p planNode) itemRowsRead() int {
	n := 0
	if p.Relation == "import_items" {
		n = int(p.Rows*p.Loops + p.Removed)
	}
	for _, c := range p.Plans {
		n += c.itemRowsRead()
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
// statements run with planNow: the item claims, the import attempt batch
// and the forward outcome update.
func PreparedPlannedNow(ctx context.Context, s *Service) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = ANY($1)`,
		[]string{claimItemsSQL, writeAttemptsSQL, claimExportSQL, writeOutcomesSQL}).Scan(&n)
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
