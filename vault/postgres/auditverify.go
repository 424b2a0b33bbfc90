package postgres

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// VerifyAudit verifies the audit trail (only the tenant's chain when
// tenant is not nil; &SystemChain for the chain of rows without a tenant):
// every lane of every chain is walked in sequence order from its retention
// checkpoint, every keyed hash recomputed and the end compared with the
// lane's head, in short reads (no snapshot is held for the whole walk);
// then every stored checkpoint is checked (see checkCheckpoints). Rows
// written before the trail was written once (v1) are verified with the v1
// rules in one snapshot. A broken chain is reported in AuditReport.Breaks,
// not as an error; the error is a domain error when the database or the
// root KEK fails.
func (s *Service) VerifyAudit(ctx context.Context, tenant *uuid.UUID) (vault.AuditReport, error) {
	return s.verifyAudit(ctx, tenant, false)
}

// VerifyAuditResume is VerifyAudit walking each lane only from where the
// last verification found it whole (recorded in the database); checkpoints
// are all checked. Its errors are VerifyAudit's.
func (s *Service) VerifyAuditResume(ctx context.Context, tenant *uuid.UUID) (vault.AuditReport, error) {
	return s.verifyAudit(ctx, tenant, true)
}

func (s *Service) verifyAudit(ctx context.Context, tenant *uuid.UUID, resume bool) (vault.AuditReport, error) {
	r, err := s.verifyLegacyAudit(ctx, tenant)
	if err != nil {
		return r, err
	}
	legacy := r.Chains
	chains, err := s.verifyLanes(ctx, tenant, resume, &r)
	if err != nil {
		return r, dbError(err, "audit event")
	}
	if err := s.checkCheckpoints(ctx, tenant, &r); err != nil {
		return r, dbError(err, "audit event")
	}
	if len(chains) > legacy {
		r.Chains = len(chains)
	}
	r.OK = len(r.Breaks) == 0
	return r, nil
}

// verifyLegacyAudit verifies the v1 rows (written before migration 018).
func (s *Service) verifyLegacyAudit(ctx context.Context, tenant *uuid.UUID) (vault.AuditReport, error) {
	r := vault.AuditReport{Breaks: []vault.AuditBreak{}}
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return r, dbError(err, "audit event")
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only
	chains, err := chainsToVerify(ctx, tx, tenant)
	if err != nil {
		return r, dbError(err, "audit event")
	}
	for _, c := range chains {
		rows, pruned, brk, err := verifyChain(ctx, tx, c)
		if err != nil {
			return r, dbError(err, "audit event")
		}
		r.Rows, r.Pruned = r.Rows+rows, r.Pruned+pruned
		if brk != nil {
			r.Breaks = append(r.Breaks, *brk)
		}
	}
	r.Chains, r.OK = len(chains), len(r.Breaks) == 0
	if r.Unchained, err = countUnchained(ctx, tx, tenant); err != nil {
		return r, dbError(err, "audit event")
	}
	return r, nil
}

// chainsToVerify returns the tenant's chain, or every chain that has a head
// or a chained row.
func chainsToVerify(ctx context.Context, tx pgx.Tx, tenant *uuid.UUID) ([]uuid.UUID, error) {
	if tenant != nil {
		return []uuid.UUID{*tenant}, nil
	}
	rows, err := tx.Query(ctx, `SELECT tenant_id FROM audit_chain_heads
		UNION SELECT DISTINCT `+chainKey+` FROM audit_events WHERE chain_seq IS NOT NULL AND chain_lane IS NULL
		ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

func countUnchained(ctx context.Context, tx pgx.Tx, tenant *uuid.UUID) (int64, error) {
	var n int64
	var err error
	if tenant == nil {
		err = tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE chain_seq IS NULL`).Scan(&n)
	} else {
		err = tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE chain_seq IS NULL AND `+chainKey+` = $1`,
			*tenant).Scan(&n)
	}
	return n, err
}

// verifyChain walks one chain and returns how many rows it verified, how
// many its checkpoint covers, and its first bad row (nil when it is whole).
func verifyChain(ctx context.Context, tx pgx.Tx, tenant uuid.UUID) (int64, int64, *vault.AuditBreak, error) {
	head, err := scanHead(tx.QueryRow(ctx, `SELECT tenant_id, seq, hash, pruned_seq, pruned_hash
		FROM audit_chain_heads WHERE tenant_id = $1`, tenant))
	hasHead := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil, err
	}
	head.tenant = tenant
	w := newChainWalker(head)
	rows, err := tx.Query(ctx, `SELECT `+chainRowColumns+` FROM audit_events
		WHERE `+chainKey+` = $1 AND chain_lane IS NULL AND chain_seq > $2 ORDER BY chain_seq`, tenant, head.prunedSeq)
	if err != nil {
		return 0, 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanChainRow(rows)
		if err != nil {
			return 0, 0, nil, err
		}
		if w.step(r) != nil {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, nil, err
	}
	if w.brk == nil {
		w.finish(head, hasHead)
	}
	return w.rows, head.prunedSeq, w.brk, nil
}

// pruneRecord is what an audit.prune row says about the checkpoint it set.
type pruneRecord struct {
	ThroughSeq  int64  `json:"through_seq"`
	ThroughHash string `json:"through_hash"`
}

// chainWalker checks a chain's rows one at a time, in sequence order.
type chainWalker struct {
	chain     uuid.UUID
	next      int64  // the sequence number the next row must have
	prev      []byte // the hash the next row must link to
	rows      int64  // rows verified
	lastPrune *pruneRecord
	brk       *vault.AuditBreak
}

// newChainWalker starts at the chain's retention checkpoint.
func newChainWalker(h chainHead) *chainWalker {
	seq, hash := h.start()
	return &chainWalker{chain: h.tenant, next: seq + 1, prev: hash}
}

// step checks row r and returns the break it finds, also kept in w.brk.
func (w *chainWalker) step(r chainRow) *vault.AuditBreak {
	switch {
	case r.seq > w.next:
		return w.fail(r.id, w.next, vault.AuditMissing,
			fmt.Sprintf("seq %d is missing: the next row, id %d, has seq %d", w.next, r.id, r.seq))
	case r.seq < w.next || !bytes.Equal(r.prev, w.prev):
		return w.fail(r.id, w.next, vault.AuditReordered,
			fmt.Sprintf("row id %d at seq %d does not link to the row before it", r.id, r.seq))
	}
	want, err := r.rowHash(w.prev)
	if err != nil || !bytes.Equal(want, r.hash) {
		return w.fail(r.id, r.seq, vault.AuditChanged,
			fmt.Sprintf("row id %d at seq %d does not match its hash: its content was changed", r.id, r.seq))
	}
	if vault.Action(r.action) == vault.ActionAuditPrune {
		var p pruneRecord
		if json.Unmarshal(r.detail, &p) == nil {
			w.lastPrune = &p
		}
	}
	w.next, w.prev, w.rows = r.seq+1, r.hash, w.rows+1
	return nil
}

// finish compares where the walk ended with the recorded head and the
// checkpoint with the newest audit.prune row.
func (w *chainWalker) finish(h chainHead, hasHead bool) {
	last := w.next - 1
	switch {
	case !hasHead && w.rows > 0:
		w.fail(0, last, vault.AuditHeadMismatch, fmt.Sprintf("the chain has %d rows but no recorded head", w.rows))
	case !hasHead:
	case h.seq > last:
		w.fail(0, last+1, vault.AuditHeadMismatch,
			fmt.Sprintf("the chain ends at seq %d but its head is at seq %d: rows %d to %d are missing", last, h.seq, last+1, h.seq))
	case h.seq < last:
		w.fail(0, h.seq+1, vault.AuditHeadMismatch,
			fmt.Sprintf("the chain runs to seq %d past its head at seq %d", last, h.seq))
	case !bytes.Equal(h.hash, w.prev):
		w.fail(0, last, vault.AuditHeadMismatch, fmt.Sprintf("the hash of seq %d is not the recorded head hash", last))
	case h.prunedSeq > 0 && w.lastPrune != nil && (w.lastPrune.ThroughSeq != h.prunedSeq ||
		w.lastPrune.ThroughHash != hex.EncodeToString(h.prunedHash)):
		w.fail(0, h.prunedSeq, vault.AuditCheckpointMismatch,
			fmt.Sprintf("the retention checkpoint at seq %d is not the one the newest audit.prune row recorded", h.prunedSeq))
	}
}

func (w *chainWalker) fail(id, seq int64, reason vault.AuditBreakReason, msg string) *vault.AuditBreak {
	w.brk = &vault.AuditBreak{Chain: chainName(w.chain), ID: id, Seq: seq, Reason: reason, Message: msg}
	return w.brk
}
