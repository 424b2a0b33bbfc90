package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
)

// A forward's pending record commits before anything is sent; its outcome
// is written after the exchange. When the process stops in between (a
// crash, a kill, a lost host), the record would stay pending for ever. The
// sweeper finishes it: once the record is older than its destination's
// timeout plus the grace, no process can still be writing its outcome, and
// it is marked failed with forwarding_api_upstream_connection_error and
// outcome_unknown, since the destination may or may not have received the
// request. Each record swept is audited. A replay of its Idempotency-Key
// then answers that failure, as GET does.
//
// The sweeper walks created_at from where its last complete pass left off
// (forwarding_requests has no index on status: the outcome UPDATE changes
// it, and such an index would keep that UPDATE from being HOT). A pass
// starts at the mark, ends at now minus the grace, and moves the mark to
// now minus the grace and the longest destination timeout, before which no
// record can still be waiting.

// forwardSweepBatch bounds how many records one sweep statement marks.
const forwardSweepBatch = 100

// forwardSweeper is the client address of the sweeper's audit rows.
const forwardSweeper = "forwarding-sweeper"

// sweepPendingSQL marks failed, at most $5, the pending records created
// from $1 on and before $2 (now minus the grace) minus their destination's
// timeout ($3 ms when it has none). $4 is the failure code. It answers the
// tenant, id and token of each.
const sweepPendingSQL = `
	WITH due AS (
		SELECT f.tenant_id, f.id FROM forwarding_requests f
		LEFT JOIN forwarding_destinations d ON d.tenant_id = f.tenant_id AND d.id = f.destination_id
		WHERE f.created_at >= $1 AND f.created_at < $2 AND f.status = 'pending'
		  AND f.created_at < $2 - make_interval(secs => coalesce(nullif((d.config->>'timeout_ms')::bigint, 0), $3) / 1000.0)
		ORDER BY f.created_at, f.id LIMIT $5
		FOR UPDATE OF f
	)
	UPDATE forwarding_requests f SET status = 'failed', error_code = $4, outcome_unknown = true
	FROM due WHERE f.tenant_id = due.tenant_id AND f.id = due.id AND f.status = 'pending'
	RETURNING f.tenant_id, f.id, f.token_id`

// SweepPendingForwards marks failed, outcome unknown, every pending record
// created at or after from that is older than its destination's timeout
// plus grace (vault.DefaultForwardPendingGrace when grace is below
// vault.MinForwardPendingGrace), in batches of forwardSweepBatch, each
// with one audit row per record. It returns how many it marked and where
// the next pass may start; on a database error, what it marked so far and
// from, with a domain error.
func (s *Service) SweepPendingForwards(ctx context.Context, grace time.Duration, from time.Time) (int64, time.Time, error) {
	if grace < vault.MinForwardPendingGrace {
		grace = vault.DefaultForwardPendingGrace
	}
	now := s.clock()
	before := now.Add(-grace)
	var total int64
	for {
		n, err := s.sweepPendingBatch(ctx, from, before)
		total += n
		if err != nil {
			return total, from, err
		}
		if n < forwardSweepBatch {
			return total, later(from, before.Add(-forwarding.MaxTimeout)), nil
		}
	}
}

// sweptForward is a record the sweeper marked.
type sweptForward struct {
	tenantID, tokenID uuid.UUID
	id                string
}

// sweepPendingBatch marks one batch and audits each record of it in the
// same transaction, and returns how many it marked.
func (s *Service) sweepPendingBatch(ctx context.Context, from, before time.Time) (int64, error) {
	var swept []sweptForward
	err := s.inTx(ctx, "forwarding request", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sweepPendingSQL, from, before, forwarding.DefaultTimeout.Milliseconds(),
			vault.CodeForwardConnectionError, forwardSweepBatch)
		if err != nil {
			return err
		}
		swept, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (sweptForward, error) {
			var f sweptForward
			return f, r.Scan(&f.tenantID, &f.id, &f.tokenID)
		})
		if err != nil {
			return err
		}
		for _, f := range swept {
			if err := s.insertAudit(ctx, tx, s.sweepEvent(f)); err != nil {
				return err
			}
		}
		return nil
	})
	return int64(len(swept)), err
}

// sweepEvent is the audit row of a record the sweeper marked.
func (s *Service) sweepEvent(f sweptForward) vault.AuditEvent {
	return vault.AuditEvent{OccurredAt: s.clock(), TenantID: f.tenantID, Action: vault.ActionForwardingSweep,
		TokenID: f.tokenID, ClientAddr: forwardSweeper, Outcome: vault.OutcomeSuccess,
		Detail: map[string]any{"forwarding_request": f.id, "status": string(vault.ForwardFailed),
			"failure_code": vault.CodeForwardConnectionError, "destination_outcome": "unknown"}}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
