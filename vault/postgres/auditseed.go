package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// auditSeedBatch is how many rows one seeding transaction copies.
const auditSeedBatch = 80000

// seedDetails are the details seeded rows carry, in turn, each canonical
// JSON (keys sorted).
var seedDetails = [][]byte{[]byte(`{}`), []byte(`{"cvc_revealed":false,"reason":"charge"}`), []byte(`{"count":10}`)}

// seedActions are the actions seeded rows record, in turn.
var seedActions = []vault.Action{vault.ActionTokenRead, vault.ActionTokenCreate, vault.ActionTokenReveal}

// SeedAuditEvents writes n realistic audit rows for the tenant (reads,
// creates and reveals of random token ids over the last 30 days), chained
// and keyed like any other row, fast: batches of auditSeedBatch rows, each
// copied (COPY) in one transaction that holds every lane of the chain, each
// lane's rows contiguous. It is for benchmarks (`cardvault bench
// --preload`) and measurements. It returns a domain error when the chain
// key cannot be had or the database fails.
func (s *Service) SeedAuditEvents(ctx context.Context, tenantID uuid.UUID, n int) error {
	key, err := s.auditChainKey(ctx, tenantID)
	if err != nil {
		return dbError(err, "audit event")
	}
	now := s.clock()
	step := min(time.Second, 30*24*time.Hour/time.Duration(max(n, 1)))
	if err := s.seedPartitions(ctx, now.Add(-time.Duration(n)*step), now); err != nil {
		return err
	}
	for done := 0; done < n; {
		size := min(auditSeedBatch, n-done)
		first := now.Add(-time.Duration(n-done) * step)
		if err := s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
			return s.seedBatch(ctx, tx, tenantID, key, first, step, size)
		}); err != nil {
			return err
		}
		done += size
	}
	return nil
}

// seedPartitions creates the monthly audit partitions from the month of
// oldest to that of now, so that seeded rows of past months land in their
// own partition (which retention can drop) rather than the DEFAULT one. It
// returns a domain error when the database fails.
func (s *Service) seedPartitions(ctx context.Context, oldest, now time.Time) error {
	oldest, now = oldest.UTC(), now.UTC()
	months := (now.Year()-oldest.Year())*12 + int(now.Month()) - int(oldest.Month())
	_, err := s.db.Exec(ctx, `SELECT audit_events_ensure_partitions($1, $2)`, oldest, max(months, 0))
	return dbError(err, "audit partition")
}

// seedBatch copies size rows in tx, spread over the chain's lanes in
// contiguous runs, and advances the lanes.
func (s *Service) seedBatch(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, key []byte, first time.Time, step time.Duration, size int) error {
	rows, err := tx.Query(ctx, `SELECT chain_id, lane, seq, hash FROM audit_lanes WHERE chain_id = $1 ORDER BY lane FOR UPDATE`, tenant)
	if err != nil {
		return err
	}
	heads, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (laneHead, error) {
		var h laneHead
		return h, r.Scan(&h.chain, &h.lane, &h.seq, &h.hash)
	})
	if err != nil {
		return err
	}
	if len(heads) == 0 {
		return fmt.Errorf("audit seed: chain %s has no lanes", tenant)
	}
	per := (size + len(heads) - 1) / len(heads)
	out := make([][]any, 0, size)
	for li := range heads {
		h := &heads[li]
		for j := 0; j < per && len(out) < size; j++ {
			i := len(out)
			r := auditRowV2{lane: h.lane, chainRow: chainRow{
				occurredAt: first.Add(time.Duration(i) * step).Truncate(time.Microsecond), tenant: tenant,
				action: string(seedActions[i%len(seedActions)]), token: uuid.New(),
				requestID: fmt.Sprintf("req_seed_%d", i), clientAddr: "192.0.2.10", outcome: string(vault.OutcomeSuccess),
				detail: seedDetails[i%len(seedDetails)], seq: h.seq + 1, prev: h.hash}, canonical: true}
			hash, err := r.macV2(key)
			if err != nil {
				return err
			}
			out = append(out, []any{r.occurredAt, tenant, nil, r.action, r.token, r.requestID, r.clientAddr,
				r.outcome, string(r.detail), r.lane, r.seq, r.prev, hash})
			h.seq, h.hash = r.seq, hash
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, []string{"occurred_at", "tenant_id", "api_key_id",
		"action", "token_id", "request_id", "client_addr", "outcome", "detail", "chain_lane", "chain_seq", "prev_hash", "row_hash"},
		pgx.CopyFromRows(out)); err != nil {
		return err
	}
	for _, h := range heads {
		if _, err := tx.Exec(ctx, `UPDATE audit_lanes SET seq = $3, hash = $4, updated_at = $5 WHERE chain_id = $1 AND lane = $2`,
			h.chain, h.lane, h.seq, h.hash, s.clock()); err != nil {
			return err
		}
	}
	return nil
}
