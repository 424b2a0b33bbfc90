package postgres

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"unsafe"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/sync/errgroup"
)

// auditVerifyBatch is how many rows one verification read takes, each read
// its own short statement: no snapshot is held for the whole walk.
const auditVerifyBatch = 10000

// auditVerifyWorkers is how many lanes are verified at once: one reads
// from PostgreSQL while another hashes.
const auditVerifyWorkers = 4

// laneWalker checks a lane's rows one at a time, in sequence order.
type laneWalker struct {
	id      laneID
	key     []byte
	mac     hash.Hash         // HMAC-SHA256 under key, reset per row
	prevBuf []byte            // holds prev once rows are read without copies
	buf     []byte            // the encoding of the row being checked
	json    map[string][]byte // canonical forms of the details seen, bounded
	next    int64
	prev    []byte
	rows    int64
	// prunes are the retention checkpoints the lane's audit.prune rows
	// vouch for, by lane: "seq:hash".
	prunes map[int16]map[string]bool
	brk    *vault.AuditBreak
}

// newLaneWalker starts at the lane's retention checkpoint.
func newLaneWalker(l laneState, key []byte) *laneWalker {
	seq, hash := l.start()
	return &laneWalker{id: l.laneID, key: key, mac: hmac.New(sha256.New, key), json: map[string][]byte{}, prevBuf: make([]byte, 0, 32),
		next: seq + 1, prev: hash, prunes: map[int16]map[string]bool{}}
}

// rowMAC returns the row's HMAC, canonicalizing its detail through a
// small cache (details repeat: most rows carry one of a few shapes).
func (w *laneWalker) rowMAC(r auditRowV2) ([]byte, error) {
	c, ok := w.json[string(r.detail)]
	if !ok {
		var err error
		if c, err = canonicalJSON(r.detail); err != nil {
			return nil, err
		}
		if len(w.json) >= 4096 {
			clear(w.json)
		}
		w.json[string(r.detail)] = c
	}
	r.detail, r.canonical = c, true
	var err error
	if w.buf, err = r.appendV2(w.buf[:0]); err != nil {
		return nil, err
	}
	w.mac.Reset()
	w.mac.Write(w.buf)
	return w.mac.Sum(nil), nil
}

// step checks row r and returns the break it finds, also kept in w.brk.
func (w *laneWalker) step(r auditRowV2) *vault.AuditBreak {
	switch {
	case r.seq > w.next:
		return w.fail(r.id, w.next, vault.AuditMissing,
			fmt.Sprintf("lane %d: seq %d is missing: the next row, id %d, has seq %d", w.id.lane, w.next, r.id, r.seq))
	case r.seq < w.next || !bytes.Equal(r.prev, w.prev):
		return w.fail(r.id, w.next, vault.AuditReordered,
			fmt.Sprintf("lane %d: row id %d at seq %d does not link to the row before it", w.id.lane, r.id, r.seq))
	}
	want, err := w.rowMAC(r)
	if err != nil || !hmac.Equal(want, r.hash) {
		return w.fail(r.id, r.seq, vault.AuditChanged,
			fmt.Sprintf("lane %d: row id %d at seq %d does not match its keyed hash: it was changed or forged", w.id.lane, r.id, r.seq))
	}
	if vault.Action(r.action) == vault.ActionAuditPrune {
		w.vouch(r.detail)
	}
	w.next, w.prev, w.rows = r.seq+1, append(w.prevBuf[:0], r.hash...), w.rows+1
	return nil
}

// walkLaneRows reads up to limit rows of the lane after seq, in order, in
// one statement, and steps w through them until it breaks, without
// copying their bytes (each row's bytes live until the next row is read).
// It returns how many rows it read.
func (s *Service) walkLaneRows(ctx context.Context, id laneID, after int64, limit int, w *laneWalker) (int, error) {
	rows, err := s.db.Query(ctx, `SELECT id, occurred_at, api_key_id, action, token_id, request_id, client_addr,
		outcome, detail, chain_seq, prev_hash, row_hash FROM audit_events
		WHERE `+chainKey+` = $1 AND chain_lane = $2 AND chain_seq > $3 ORDER BY chain_seq LIMIT $4`,
		id.chain, id.lane, after, limit)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var key, token pgtype.UUID
	var action, request, client, outcome, detail, prev, hash pgtype.DriverBytes
	r := auditRowV2{lane: id.lane}
	r.tenant = id.chain
	n := 0
	for rows.Next() {
		if err := rows.Scan(&r.id, &r.occurredAt, &key, &action, &token, &request, &client, &outcome, &detail,
			&r.seq, &prev, &hash); err != nil {
			return n, err
		}
		n++
		r.apiKey, r.token = uuid.UUID(key.Bytes), uuid.UUID(token.Bytes)
		if !key.Valid {
			r.apiKey = uuid.Nil
		}
		if !token.Valid {
			r.token = uuid.Nil
		}
		r.action, r.requestID, r.clientAddr, r.outcome = unsafeString(action), unsafeString(request), unsafeString(client), unsafeString(outcome)
		r.detail, r.prev, r.hash = jsonbText(detail), prev, hash
		if w.step(r) != nil {
			break
		}
	}
	rows.Close()
	return n, rows.Err()
}

// unsafeString returns b as a string without copying; it must not outlive
// b (a row's bytes live until the next row is read).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// jsonbText returns the text of a jsonb value as the driver received it:
// binary jsonb is a version byte (1) and the text.
func jsonbText(b []byte) []byte {
	if len(b) > 0 && b[0] == 1 {
		return b[1:]
	}
	return b
}

func (w *laneWalker) fail(id, seq int64, reason vault.AuditBreakReason, msg string) *vault.AuditBreak {
	w.brk = &vault.AuditBreak{Chain: chainName(w.id.chain), ID: id, Seq: seq, Reason: reason, Message: msg}
	return w.brk
}

// laneResult is what walking one lane found.
type laneResult struct {
	state  laneState
	rows   int64
	brk    *vault.AuditBreak
	prunes map[int16]map[string]bool
}

// verifyLane walks one lane from from (seq, hash; its retention checkpoint
// when from is nil) to its head as read when the walk starts, in reads of
// auditVerifyBatch rows, and compares the end with the head.
func (s *Service) verifyLane(ctx context.Context, id laneID, key []byte, from *laneHead) (laneResult, error) {
	l, err := scanLaneState(s.db.QueryRow(ctx, `SELECT `+laneStateColumns+` FROM audit_lanes
		WHERE chain_id = $1 AND lane = $2`, id.chain, id.lane))
	if err != nil {
		return laneResult{}, err
	}
	w := newLaneWalker(l, key)
	if from != nil && from.seq > l.prunedSeq && from.seq <= l.seq {
		w.next, w.prev = from.seq+1, from.hash
	}
	res := laneResult{state: l}
	for w.brk == nil && w.next <= l.seq {
		n, err := s.walkLaneRows(ctx, id, w.next-1, min(auditVerifyBatch, int(l.seq-w.next+1)), w)
		if err != nil {
			return res, err
		}
		if n == 0 {
			w.fail(0, w.next, vault.AuditHeadMismatch, fmt.Sprintf(
				"lane %d ends at seq %d but its head is at seq %d: rows %d to %d are missing", id.lane, w.next-1, l.seq, w.next, l.seq))
			break
		}
	}
	if w.brk == nil && !bytes.Equal(w.prev, l.hash) {
		w.fail(0, l.seq, vault.AuditHeadMismatch, fmt.Sprintf("lane %d: the hash of seq %d is not the recorded head hash", id.lane, l.seq))
	}
	res.rows, res.brk, res.prunes = w.rows, w.brk, w.prunes
	return res, nil
}

// verifyLanes verifies every lane of the chains (all when chain is nil)
// and adds what it finds to r: rows, breaks, and retention checkpoints no
// audit.prune row vouches for. Lanes are walked from where the last
// verification recorded them whole when resume, and that progress is
// recorded again.
func (s *Service) verifyLanes(ctx context.Context, chain *uuid.UUID, resume bool, r *vault.AuditReport) ([]uuid.UUID, error) {
	lanes, err := s.listLanes(ctx, chain)
	if err != nil {
		return nil, err
	}
	results := make([]laneResult, len(lanes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(auditVerifyWorkers)
	for i, id := range lanes {
		g.Go(func() error {
			key, err := s.auditChainKey(gctx, id.chain)
			if err != nil {
				return err
			}
			var from *laneHead
			if resume {
				if from, err = s.verifiedUpTo(gctx, id); err != nil {
					return err
				}
			}
			if results[i], err = s.verifyLane(gctx, id, key, from); err != nil {
				return err
			}
			if results[i].brk == nil {
				return s.recordVerified(gctx, results[i].state)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	byChain := map[uuid.UUID][]laneResult{}
	var chains []uuid.UUID
	for i, id := range lanes {
		res := results[i]
		if byChain[id.chain] == nil {
			chains = append(chains, id.chain)
		}
		byChain[id.chain] = append(byChain[id.chain], res)
		r.Rows, r.Pruned = r.Rows+res.rows, r.Pruned+res.state.prunedSeq
		if res.brk != nil {
			r.Breaks = append(r.Breaks, *res.brk)
		}
	}
	for _, c := range chains {
		checkPruneVouchers(byChain[c], r, resume)
	}
	return chains, nil
}

// checkPruneVouchers reports every lane of a chain whose retention
// checkpoint no audit.prune row of the chain vouches for (only on a full
// walk: a resumed walk does not see the older prune rows).
func checkPruneVouchers(results []laneResult, r *vault.AuditReport, resumed bool) {
	if resumed {
		return
	}
	vouched := map[int16]map[string]bool{}
	for _, res := range results {
		for lane, set := range res.prunes {
			if vouched[lane] == nil {
				vouched[lane] = map[string]bool{}
			}
			for k := range set {
				vouched[lane][k] = true
			}
		}
	}
	for _, res := range results {
		st := res.state
		if st.prunedSeq == 0 || res.brk != nil {
			continue
		}
		if !vouched[st.lane][fmt.Sprintf("%d:%s", st.prunedSeq, hex.EncodeToString(st.prunedHash))] {
			r.Breaks = append(r.Breaks, vault.AuditBreak{Chain: chainName(st.chain), Seq: st.prunedSeq,
				Reason: vault.AuditCheckpointMismatch, Message: fmt.Sprintf(
					"lane %d: the retention checkpoint at seq %d is not vouched for by an audit.prune row", st.lane, st.prunedSeq)})
		}
	}
}

// verifiedUpTo returns where the last verification of the lane ended
// whole, or nil.
func (s *Service) verifiedUpTo(ctx context.Context, id laneID) (*laneHead, error) {
	h := laneHead{chain: id.chain, lane: id.lane}
	err := s.db.QueryRow(ctx, `SELECT seq, hash FROM audit_verified WHERE chain_id = $1 AND lane = $2`,
		id.chain, id.lane).Scan(&h.seq, &h.hash)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		return nil, err
	}
	return &h, nil
}

// recordVerified records that the lane verified whole up to its head as
// read.
func (s *Service) recordVerified(ctx context.Context, l laneState) error {
	if l.seq == 0 {
		return nil
	}
	_, err := s.db.Exec(ctx, `INSERT INTO audit_verified (chain_id, lane, seq, hash, verified_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (chain_id, lane) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, verified_at = excluded.verified_at`,
		l.chain, l.lane, l.seq, l.hash, s.clock())
	return err
}

// laneVouch is a retention checkpoint an audit.prune row sets: one lane's
// (a batch of deletes) or each of its "lanes" (a dropped partition).
type laneVouch struct {
	Lane        *int16      `json:"lane"`
	ThroughSeq  int64       `json:"through_seq"`
	ThroughHash string      `json:"through_hash"`
	Lanes       []laneVouch `json:"lanes"`
}

// vouch records the retention checkpoints an audit.prune row's detail
// vouches for.
func (w *laneWalker) vouch(detail []byte) {
	var p laneVouch
	if json.Unmarshal(detail, &p) != nil {
		return
	}
	for _, v := range append(p.Lanes, p) {
		if v.Lane == nil {
			continue
		}
		if w.prunes[*v.Lane] == nil {
			w.prunes[*v.Lane] = map[string]bool{}
		}
		w.prunes[*v.Lane][fmt.Sprintf("%d:%s", v.ThroughSeq, v.ThroughHash)] = true
	}
}
