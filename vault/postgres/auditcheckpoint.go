package postgres

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Checkpoints are MAC'd with the chain's own HMAC key rather than signed:
// the key already exists per chain, is wrapped by the root KEK like the
// tenants' keysets and is re-wrapped by `keys rotate-root`, so nothing new
// has to be generated, stored or rotated. The price is that only a holder
// of the KEK (the vault) can check an exported checkpoint; an Ed25519
// signature would let a third party check it without the KEK.

// auditCheckpointDomain starts the encoding a checkpoint MAC covers.
const auditCheckpointDomain = "cardvault.audit.checkpoint.v1"

// checkpointMAC returns the MAC of a checkpoint under the chain key.
func checkpointMAC(key []byte, chain uuid.UUID, lane int16, seq int64, hash []byte, at time.Time) []byte {
	b := appendField(nil, []byte(auditCheckpointDomain))
	b = appendField(b, chain[:])
	b = appendField(b, binary.BigEndian.AppendUint16(nil, uint16(lane)))
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(seq)))
	b = appendField(b, hash)
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(at.UnixMicro())))
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)
}

// WriteAuditCheckpoints writes a checkpoint of every lane (of the tenant's
// chain only when tenant is not nil) that has rows and moved since its last
// checkpoint, replacing that one, and returns how many it wrote. The
// serving process runs it on a schedule (VAULT_AUDIT_CHECKPOINT_INTERVAL);
// `cardvault audit checkpoint export` runs it before exporting. It returns
// a domain error when the database or the root KEK fails.
func (s *Service) WriteAuditCheckpoints(ctx context.Context, tenant *uuid.UUID) (int, error) {
	rows, err := s.db.Query(ctx, `SELECT `+laneStateColumns+` FROM audit_lanes l
		WHERE ($1::uuid IS NULL OR chain_id = $1) AND seq > 0
		  AND NOT EXISTS (SELECT FROM audit_checkpoints c WHERE c.chain_id = l.chain_id AND c.lane = l.lane AND c.seq = l.seq)
		ORDER BY chain_id, lane`, tenant)
	if err != nil {
		return 0, dbError(err, "audit event")
	}
	lanes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (laneState, error) { return scanLaneState(r) })
	if err != nil {
		return 0, dbError(err, "audit event")
	}
	now := s.clock().Truncate(time.Microsecond)
	n := 0
	for _, l := range lanes {
		key, err := s.auditChainKey(ctx, l.chain)
		if err != nil {
			return n, dbError(err, "audit event")
		}
		mac := checkpointMAC(key, l.chain, l.lane, l.seq, l.hash, now)
		err = s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (chain_id, lane, seq, hash, created_at, mac)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, l.chain, l.lane, l.seq, l.hash, now, mac); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM audit_checkpoints WHERE chain_id = $1 AND lane = $2 AND seq < $3`,
				l.chain, l.lane, l.seq)
			return err
		})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// AuditCheckpoints returns the stored checkpoints (of the tenant's chain
// only when tenant is not nil), newest of each lane, for export. It
// returns a domain error when the database fails.
func (s *Service) AuditCheckpoints(ctx context.Context, tenant *uuid.UUID) ([]vault.AuditCheckpoint, error) {
	rows, err := s.db.Query(ctx, `SELECT chain_id, lane, seq, hash, created_at, mac FROM audit_checkpoints
		WHERE $1::uuid IS NULL OR chain_id = $1 ORDER BY chain_id, lane, seq`, tenant)
	if err != nil {
		return nil, dbError(err, "audit event")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.AuditCheckpoint, error) {
		var c vault.AuditCheckpoint
		var chain uuid.UUID
		var lane int16
		var hash, mac []byte
		err := r.Scan(&chain, &lane, &c.Seq, &hash, &c.CreatedAt, &mac)
		c.Chain, c.Lane, c.Hash, c.MAC = chainName(chain), int(lane), hex.EncodeToString(hash), hex.EncodeToString(mac)
		c.CreatedAt = c.CreatedAt.UTC()
		return c, err
	})
	return out, dbError(err, "audit event")
}

// checkCheckpoints checks the stored checkpoints of the chains (all when
// chain is nil) and adds what is wrong to r.
func (s *Service) checkCheckpoints(ctx context.Context, chain *uuid.UUID, r *vault.AuditReport) error {
	cps, err := s.AuditCheckpoints(ctx, chain)
	if err != nil {
		return err
	}
	return s.checkCheckpointList(ctx, cps, r)
}

// VerifyAuditCheckpoints checks checkpoints kept outside the database (an
// export) against the trail: each must carry a valid MAC under its chain's
// key, and the row it names must still be there with its hash. A lane
// that now ends before a checkpoint is reported as AuditTruncated, a row
// with another hash as AuditRewritten, a bad MAC as AuditCheckpointInvalid,
// in r.Breaks. It returns a domain error when the database or the root KEK
// fails.
func (s *Service) VerifyAuditCheckpoints(ctx context.Context, cps []vault.AuditCheckpoint, r *vault.AuditReport) error {
	if err := s.checkCheckpointList(ctx, cps, r); err != nil {
		return err
	}
	r.OK = len(r.Breaks) == 0
	return nil
}

func (s *Service) checkCheckpointList(ctx context.Context, cps []vault.AuditCheckpoint, r *vault.AuditReport) error {
	lanes := map[laneID]*laneState{}
	for _, cp := range cps {
		brk, err := s.checkCheckpoint(ctx, cp, lanes)
		if err != nil {
			return dbError(err, "audit event")
		}
		if brk != nil {
			r.Breaks = append(r.Breaks, *brk)
		}
	}
	return nil
}

// checkCheckpoint checks one checkpoint; lanes caches the lanes' heads.
func (s *Service) checkCheckpoint(ctx context.Context, cp vault.AuditCheckpoint, lanes map[laneID]*laneState) (*vault.AuditBreak, error) {
	chain := vault.SystemChain
	if cp.Chain != "system" {
		var err error
		if chain, err = uuid.Parse(cp.Chain); err != nil {
			return checkpointBreak(cp, vault.AuditCheckpointInvalid, "the checkpoint names no chain"), nil
		}
	}
	hash, err1 := hex.DecodeString(cp.Hash)
	mac, err2 := hex.DecodeString(cp.MAC)
	if err1 != nil || err2 != nil || cp.Lane < 0 || cp.Lane > 1<<15-1 {
		return checkpointBreak(cp, vault.AuditCheckpointInvalid, "the checkpoint is malformed"), nil
	}
	id := laneID{chain, int16(cp.Lane)}
	var known bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM audit_chain_keys WHERE chain_id = $1)`, chain).Scan(&known); err != nil {
		return nil, err
	}
	if !known {
		return checkpointBreak(cp, vault.AuditCheckpointInvalid, "the checkpoint's chain has no key: the chain was removed"), nil
	}
	key, err := s.auditChainKey(ctx, chain)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(mac, checkpointMAC(key, chain, id.lane, cp.Seq, hash, cp.CreatedAt)) {
		return checkpointBreak(cp, vault.AuditCheckpointInvalid, "the checkpoint's MAC does not verify: it was forged or edited"), nil
	}
	l := lanes[id]
	if l == nil {
		st, err := scanLaneState(s.db.QueryRow(ctx, `SELECT `+laneStateColumns+` FROM audit_lanes WHERE chain_id = $1 AND lane = $2`,
			chain, id.lane))
		if errors.Is(err, pgx.ErrNoRows) {
			st = laneState{laneID: id}
		} else if err != nil {
			return nil, err
		}
		l = &st
		lanes[id] = l
	}
	switch {
	case l.seq < cp.Seq:
		return checkpointBreak(cp, vault.AuditTruncated, fmt.Sprintf(
			"lane %d ends at seq %d but a checkpoint of %s saw seq %d: rows %d to %d were removed",
			id.lane, l.seq, cp.CreatedAt.Format(time.RFC3339), cp.Seq, l.seq+1, cp.Seq)), nil
	case cp.Seq < l.prunedSeq:
		return nil, nil // pruned under retention
	case cp.Seq == l.prunedSeq:
		if !bytes.Equal(hash, l.prunedHash) {
			return checkpointBreak(cp, vault.AuditRewritten, fmt.Sprintf("lane %d: the retention checkpoint at seq %d is not the row the checkpoint saw", id.lane, cp.Seq)), nil
		}
		return nil, nil
	}
	var rowHash []byte
	err = s.db.QueryRow(ctx, `SELECT row_hash FROM audit_events WHERE `+chainKey+` = $1 AND chain_lane = $2 AND chain_seq = $3`,
		chain, id.lane, cp.Seq).Scan(&rowHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return checkpointBreak(cp, vault.AuditTruncated, fmt.Sprintf("lane %d: the row at seq %d a checkpoint saw is gone", id.lane, cp.Seq)), nil
	case err != nil:
		return nil, err
	case !bytes.Equal(rowHash, hash):
		return checkpointBreak(cp, vault.AuditRewritten, fmt.Sprintf(
			"lane %d: the row at seq %d is not the one a checkpoint of %s saw: the lane was rewritten", id.lane, cp.Seq, cp.CreatedAt.Format(time.RFC3339))), nil
	}
	return nil, nil
}

func checkpointBreak(cp vault.AuditCheckpoint, reason vault.AuditBreakReason, msg string) *vault.AuditBreak {
	return &vault.AuditBreak{Chain: cp.Chain, Seq: cp.Seq, Reason: reason, Message: msg}
}
