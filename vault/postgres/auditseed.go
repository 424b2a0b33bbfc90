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
// lane's rows contiguous; the next batch is chained while the last one is
// copied (one CPU each). It is for benchmarks (`cardvault bench --preload`)
// and measurements, with nothing else writing the tenant's trail. It
// returns a domain error when the chain key cannot be had, the database
// fails or the chain moved under it.
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
	heads, err := s.seedHeads(ctx, tenantID)
	if err != nil {
		return err
	}
	batches := (n + auditSeedBatch - 1) / auditSeedBatch
	return makeAhead(ctx, batches, func(i int) (*seedBatch, error) {
		done := i * auditSeedBatch
		b, err := chainSeedBatch(tenantID, key, heads, now.Add(-time.Duration(n-done)*step), step, min(auditSeedBatch, n-done))
		if err == nil {
			heads = b.to
		}
		return b, err
	}, func(ctx context.Context, b *seedBatch) error {
		return s.inTx(ctx, "audit event", func(tx pgx.Tx) error { return s.copySeedBatch(ctx, tx, b) })
	})
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

// seedBatch is a batch of chained seed rows and the lane heads before
// (from) and after (to) it.
type seedBatch struct {
	rows     [][]any
	from, to []laneHead
}

// lockLanesInOrderSQL locks every lane of a chain and answers their heads.
const lockLanesInOrderSQL = `SELECT chain_id, lane, seq, hash FROM audit_lanes WHERE chain_id = $1 ORDER BY lane FOR UPDATE`

// seedHeads returns the heads of the chain's lanes, in lane order, or an
// error when the chain has no lanes or the database fails.
func (s *Service) seedHeads(ctx context.Context, chain uuid.UUID) ([]laneHead, error) {
	rows, err := s.db.Query(ctx, lockLanesInOrderSQL, chain)
	if err != nil {
		return nil, dbError(err, "audit lane")
	}
	heads, err := collectHeads(rows)
	if err == nil && len(heads) == 0 {
		err = fmt.Errorf("audit seed: chain %s has no lanes", chain)
	}
	return heads, err
}

// collectHeads reads lane heads in the order rows answers them.
func collectHeads(rows pgx.Rows) ([]laneHead, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (laneHead, error) {
		var h laneHead
		return h, r.Scan(&h.chain, &h.lane, &h.seq, &h.hash)
	})
}

// chainSeedBatch chains size rows after heads (left unchanged), spread over
// the lanes in contiguous runs, the i-th occurring at first + i × step.
func chainSeedBatch(tenant uuid.UUID, key []byte, heads []laneHead, first time.Time, step time.Duration, size int) (*seedBatch, error) {
	b := &seedBatch{rows: make([][]any, 0, size), from: heads, to: append([]laneHead(nil), heads...)}
	per := (size + len(heads) - 1) / len(heads)
	for li := range b.to {
		h := &b.to[li]
		for j := 0; j < per && len(b.rows) < size; j++ {
			i := len(b.rows)
			r := auditRowV2{lane: h.lane, chainRow: chainRow{
				occurredAt: first.Add(time.Duration(i) * step).Truncate(time.Microsecond), tenant: tenant,
				action: string(seedActions[i%len(seedActions)]), token: uuid.New(),
				requestID: fmt.Sprintf("req_seed_%d", i), clientAddr: "192.0.2.10", outcome: string(vault.OutcomeSuccess),
				detail: seedDetails[i%len(seedDetails)], seq: h.seq + 1, prev: h.hash}, canonical: true}
			hash, err := r.macV2(key)
			if err != nil {
				return nil, err
			}
			b.rows = append(b.rows, []any{r.occurredAt, tenant, nil, r.action, r.token, r.requestID, r.clientAddr,
				r.outcome, string(r.detail), r.lane, r.seq, r.prev, hash})
			h.seq, h.hash = r.seq, hash
		}
	}
	return b, nil
}

// copySeedBatch locks the chain's lanes in tx, checks they still stand
// where b was chained from, copies b's rows and advances the lanes.
func (s *Service) copySeedBatch(ctx context.Context, tx pgx.Tx, b *seedBatch) error {
	rows, err := tx.Query(ctx, lockLanesInOrderSQL, b.from[0].chain)
	if err != nil {
		return err
	}
	heads, err := collectHeads(rows)
	if err != nil {
		return err
	}
	for i := range heads {
		if i >= len(b.from) || heads[i].lane != b.from[i].lane || heads[i].seq != b.from[i].seq {
			return fmt.Errorf("audit seed: chain %s moved while seeding", b.from[0].chain)
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, []string{"occurred_at", "tenant_id", "api_key_id",
		"action", "token_id", "request_id", "client_addr", "outcome", "detail", "chain_lane", "chain_seq", "prev_hash", "row_hash"},
		pgx.CopyFromRows(b.rows)); err != nil {
		return err
	}
	for _, h := range b.to {
		if _, err := tx.Exec(ctx, `UPDATE audit_lanes SET seq = $3, hash = $4, updated_at = $5 WHERE chain_id = $1 AND lane = $2`,
			h.chain, h.lane, h.seq, h.hash, s.clock()); err != nil {
			return err
		}
	}
	return nil
}
