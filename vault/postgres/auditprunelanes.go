package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pruneLanes prunes the written-once rows older than cutoff that are in
// the DEFAULT partition (rows whose month had no partition), lane by lane
// and in batches, each batch verified before it is deleted; it returns how
// many rows it deleted and the first error (the other lanes are still
// pruned).
func (s *Service) pruneLanes(ctx context.Context, cutoff time.Time) (int64, error) {
	lanes, err := s.listLanes(ctx, nil)
	if err != nil {
		return 0, dbError(err, "audit event")
	}
	var total int64
	var first error
	for _, l := range lanes {
		for {
			n, err := s.pruneLaneBatch(ctx, l, cutoff)
			total += n
			if err != nil && first == nil {
				first = err
			}
			if err != nil || n < auditPruneBatch {
				break
			}
		}
	}
	return total, first
}

// laneHasPrunable reports whether the lane's oldest row after its
// retention checkpoint is older than cutoff and in the DEFAULT partition:
// otherwise pruneLaneBatch would delete nothing, and the lane is neither
// locked (its writers wait for no prune) nor its rows read, which a lane
// whose rows all sit in monthly partitions (every lane once retention
// applies: a month goes whole, by DropAuditPartitions) would have cost every
// prune pass, a batch of its rows read and discarded. One index probe.
func laneHasPrunable(ctx context.Context, q querier, id laneID, cutoff time.Time) (bool, error) {
	var due bool
	err := q.QueryRow(ctx, `SELECT e.occurred_at < $3 AND e.tableoid = 'audit_events_default'::regclass
		FROM audit_lanes l CROSS JOIN LATERAL (
			SELECT occurred_at, tableoid FROM audit_events
			WHERE `+chainKey+` = l.chain_id AND chain_lane = l.lane AND chain_seq > l.pruned_seq
			ORDER BY chain_seq LIMIT 1) e
		WHERE l.chain_id = $1 AND l.lane = $2`, id.chain, id.lane, cutoff).Scan(&due)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return due, dbError(err, "audit event")
}

// laneID names one lane of one chain.
type laneID struct {
	chain uuid.UUID
	lane  int16
}

// listLanes returns every lane (of the chain when chain is not nil), in
// order.
func (s *Service) listLanes(ctx context.Context, chain *uuid.UUID) ([]laneID, error) {
	rows, err := s.db.Query(ctx, `SELECT chain_id, lane FROM audit_lanes
		WHERE $1::uuid IS NULL OR chain_id = $1 ORDER BY chain_id, lane`, chain)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (laneID, error) {
		var l laneID
		err := r.Scan(&l.chain, &l.lane)
		return l, err
	})
}

// laneState is a lane's head row.
type laneState struct {
	laneID
	seq, prunedSeq   int64
	hash, prunedHash []byte
}

// start returns where verification of the lane starts: its retention
// checkpoint, or the genesis.
func (l laneState) start() (int64, []byte) {
	if l.prunedSeq == 0 {
		return 0, genesisHash
	}
	return l.prunedSeq, l.prunedHash
}

const laneStateColumns = `chain_id, lane, seq, hash, pruned_seq, pruned_hash`

func scanLaneState(row pgx.Row) (laneState, error) {
	var l laneState
	err := row.Scan(&l.chain, &l.lane, &l.seq, &l.hash, &l.prunedSeq, &l.prunedHash)
	return l, err
}

// pruneLaneBatch deletes up to auditPruneBatch of the lane's oldest rows
// that are older than cutoff and verify, moves the lane's retention
// checkpoint to the newest of them and writes an audit.prune row naming
// it, in one transaction holding the lane. It returns how many rows it
// deleted; a broken lane is an error and nothing past the break is
// deleted.
func (s *Service) pruneLaneBatch(ctx context.Context, id laneID, cutoff time.Time) (int64, error) {
	if due, err := laneHasPrunable(ctx, s.db, id, cutoff); err != nil || !due {
		return 0, err
	}
	key, err := s.auditChainKey(ctx, id.chain)
	if err != nil {
		return 0, err
	}
	var n int64
	var through auditRowV2
	var brk *vault.AuditBreak
	err = s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
		l, err := scanLaneState(tx.QueryRow(ctx, `SELECT `+laneStateColumns+` FROM audit_lanes
			WHERE chain_id = $1 AND lane = $2 FOR UPDATE`, id.chain, id.lane))
		if err != nil {
			return err
		}
		batch, err := readLaneRows(ctx, tx, id, l.prunedSeq, auditPruneBatch)
		if err != nil {
			return err
		}
		w := newLaneWalker(l, key)
		for _, r := range batch {
			if !r.occurredAt.Before(cutoff) || w.step(r) != nil {
				break
			}
			n, through = n+1, r
		}
		brk = w.brk
		if n, err = inDefaultPartition(ctx, tx, id, l.prunedSeq, n); err != nil || n == 0 {
			return err
		}
		through = batch[n-1]
		tag, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE `+chainKey+` = $1 AND chain_lane = $2
			AND chain_seq > $3 AND chain_seq <= $4`, id.chain, id.lane, l.prunedSeq, through.seq)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != n {
			return fmt.Errorf("audit prune: deleted %d rows, expected %d", tag.RowsAffected(), n)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_lanes SET pruned_seq = $3, pruned_hash = $4, updated_at = $5
			WHERE chain_id = $1 AND lane = $2`, id.chain, id.lane, through.seq, through.hash, s.clock()); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(vault.Actor{TenantID: id.chain, ClientAddr: "audit-pruner"}, vault.ActionAuditPrune, uuid.Nil,
			map[string]any{"pruned": n, "lane": id.lane, "through_seq": through.seq,
				"through_hash": hex.EncodeToString(through.hash), "older_than": cutoff.Format(time.RFC3339Nano)}))
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.log.Info("audit events pruned", "chain", chainName(id.chain), "lane", id.lane, "count", n,
			"through_seq", through.seq, "through_hash", hex.EncodeToString(through.hash))
	}
	if brk != nil && n == 0 {
		return 0, vault.Internal(fmt.Errorf("audit chain %s lane %d is broken at seq %d (%s): not pruning past it",
			brk.Chain, id.lane, brk.Seq, brk.Reason))
	}
	return n, nil
}

// laneRowColumns are the columns readLaneRows reads.
const laneRowColumns = chainRowColumns + `, chain_lane`

// readLaneRows reads up to limit rows of the lane after seq, in order.
func readLaneRows(ctx context.Context, q querier, id laneID, after int64, limit int) ([]auditRowV2, error) {
	rows, err := q.Query(ctx, `SELECT `+laneRowColumns+` FROM audit_events
		WHERE `+chainKey+` = $1 AND chain_lane = $2 AND chain_seq > $3 ORDER BY chain_seq LIMIT $4`,
		id.chain, id.lane, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (auditRowV2, error) {
		var r auditRowV2
		var tenant, key, token *uuid.UUID
		err := row.Scan(&r.id, &r.occurredAt, &tenant, &key, &r.action, &token,
			&r.requestID, &r.clientAddr, &r.outcome, &r.detail, &r.seq, &r.prev, &r.hash, &r.lane)
		r.tenant, r.apiKey, r.token = derefUUID(tenant), derefUUID(key), derefUUID(token)
		return r, err
	})
}

// inDefaultPartition returns how many of the lane's n rows after seq
// are in a row in the DEFAULT partition: the rows of a monthly partition
// go only when the whole month is dropped (DropAuditPartitions), never row
// by row.
func inDefaultPartition(ctx context.Context, tx pgx.Tx, id laneID, after, n int64) (int64, error) {
	var first *int64
	if err := tx.QueryRow(ctx, `SELECT min(chain_seq) FROM audit_events WHERE `+chainKey+` = $1 AND chain_lane = $2
		AND chain_seq > $3 AND chain_seq <= $4 AND tableoid <> 'audit_events_default'::regclass`,
		id.chain, id.lane, after, after+n).Scan(&first); err != nil || first == nil {
		return n, err
	}
	return *first - after - 1, nil
}
