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

// PruneAudit first drops the monthly partitions older than retention that
// a verified checkpoint covers (DropAuditPartitions), then deletes the
// chained audit rows still older than retention, chain by
// chain and in batches, oldest sequence numbers first, so that every chain
// keeps a gapless tail: a chain is pruned only up to its first row that is
// still within the retention (rows commit, and are chained, slightly out of
// time order). Each batch verifies the rows it deletes, records the
// sequence number and hash of the newest one as the chain's checkpoint
// (where VerifyAudit starts), and writes an audit.prune row into the chain
// naming the count and the checkpoint, all in one transaction. Pruning
// stops at a bad row, so it never erases the evidence of an edit. It
// returns how many rows it deleted, a KindInvalid error for a retention
// under MinAuditRetention, and an error naming the chain when a chain is
// broken or the database fails; the other chains are still pruned.
func (s *Service) PruneAudit(ctx context.Context, retention time.Duration) (int64, error) {
	if retention < vault.MinAuditRetention {
		return 0, vault.Errorf(vault.KindInvalid, vault.CodeInvalidRetention, "the audit retention must be at least one day")
	}
	cutoff := s.clock().Add(-retention)
	rows, err := s.db.Query(ctx, `SELECT tenant_id FROM audit_chain_heads ORDER BY tenant_id`)
	if err != nil {
		return 0, dbError(err, "audit event")
	}
	chains, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return 0, dbError(err, "audit event")
	}
	total, first := s.dropPartitions(ctx, retention)
	n, err := s.pruneLanes(ctx, cutoff)
	total += n
	if first == nil {
		first = err
	}
	for _, c := range chains {
		for {
			n, err := s.pruneBatch(ctx, c, cutoff)
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

// pruneBatch prunes up to auditPruneBatch rows of one chain older than
// cutoff and returns how many it deleted.
func (s *Service) pruneBatch(ctx context.Context, tenant uuid.UUID, cutoff time.Time) (int64, error) {
	var n int64
	var through chainRow
	var heads []chainHead
	var brk *vault.AuditBreak
	err := s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
		if _, err := lockAuditChain(ctx, tx, true); err != nil {
			return err
		}
		head, err := scanHead(tx.QueryRow(ctx, `SELECT tenant_id, seq, hash, pruned_seq, pruned_hash
			FROM audit_chain_heads WHERE tenant_id = $1`, tenant))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // gone since it was listed (a test truncating)
		}
		if err != nil {
			return err
		}
		n, through, brk, err = prunable(ctx, tx, head, cutoff)
		if err != nil || n == 0 {
			return err
		}
		if err := deleteThrough(ctx, tx, head, through, n, s.clock()); err != nil {
			return err
		}
		heads, err = s.auditPrune(ctx, tx, tenant, n, through, cutoff)
		return err
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.log.Info("audit events pruned", "chain", chainName(tenant), "count", n,
			"through_seq", through.seq, "through_hash", hex.EncodeToString(through.hash))
		s.logHeads(heads)
	}
	if brk != nil && n == 0 {
		return 0, vault.Internal(fmt.Errorf("audit chain %s is broken at seq %d (%s): not pruning past it",
			brk.Chain, brk.Seq, brk.Reason))
	}
	return n, nil
}

// prunable walks the chain from its checkpoint and returns how many rows
// in a row are older than cutoff and verify, the newest of them, and the
// break that stopped the walk, if one did.
func prunable(ctx context.Context, tx pgx.Tx, head chainHead, cutoff time.Time) (int64, chainRow, *vault.AuditBreak, error) {
	rows, err := tx.Query(ctx, `SELECT `+chainRowColumns+` FROM audit_events
		WHERE `+chainKey+` = $1 AND chain_lane IS NULL AND chain_seq > $2 ORDER BY chain_seq LIMIT $3`,
		head.tenant, head.prunedSeq, auditPruneBatch)
	if err != nil {
		return 0, chainRow{}, nil, err
	}
	batch, err := collectChainRows(rows)
	if err != nil {
		return 0, chainRow{}, nil, err
	}
	w := newChainWalker(head)
	var n int64
	var through chainRow
	for _, r := range batch {
		if !r.occurredAt.Before(cutoff) {
			break
		}
		if w.step(r) != nil {
			break
		}
		n, through = n+1, r
	}
	return n, through, w.brk, nil
}

// deleteThrough deletes the chain's rows after its checkpoint up to and
// including through, and moves the checkpoint to through.
func deleteThrough(ctx context.Context, tx pgx.Tx, head chainHead, through chainRow, n int64, now time.Time) error {
	tag, err := tx.Exec(ctx, `DELETE FROM audit_events
		WHERE `+chainKey+` = $1 AND chain_lane IS NULL AND chain_seq > $2 AND chain_seq <= $3`,
		head.tenant, head.prunedSeq, through.seq)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != n {
		return fmt.Errorf("audit prune: deleted %d rows, expected %d", tag.RowsAffected(), n)
	}
	_, err = tx.Exec(ctx, `UPDATE audit_chain_heads SET pruned_seq = $2, pruned_hash = $3, updated_at = $4
		WHERE tenant_id = $1`, head.tenant, through.seq, through.hash, now)
	return err
}

// auditPrune writes the audit.prune row of a legacy (v1) batch, written
// once into the chain's lanes like every new row.
func (s *Service) auditPrune(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, n int64, through chainRow, cutoff time.Time) ([]chainHead, error) {
	ev := s.event(vault.Actor{TenantID: tenant, ClientAddr: "audit-pruner"}, vault.ActionAuditPrune, uuid.Nil, map[string]any{
		"pruned": n, "through_seq": through.seq, "through_hash": hex.EncodeToString(through.hash),
		"older_than": cutoff.Format(time.RFC3339Nano), "legacy": true,
	})
	return nil, s.insertAudit(ctx, tx, ev)
}

// dropPartitions drops the partitions DropAuditPartitions may drop and
// returns the rows they held; a refused partition is not an error (its
// rows are pruned row by row), a database failure is.
func (s *Service) dropPartitions(ctx context.Context, retention time.Duration) (int64, error) {
	drops, err := s.DropAuditPartitions(ctx, retention)
	var n int64
	for _, d := range drops {
		n += d.Rows + d.Deleted
	}
	if vault.ErrorKind(err) == vault.KindConflict {
		err = nil
	}
	return n, err
}
