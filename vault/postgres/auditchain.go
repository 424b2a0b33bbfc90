package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const (
	// auditChainLock is the advisory lock key that makes the chainer and
	// the pruner one at a time across every process of a database.
	auditChainLock  int64 = 0x6376_6175_6469_74 // "cvaudit"
	auditChainBatch       = 1000
	auditPruneBatch       = 5000
	// auditChainDomain starts every encoded row, so a row hash can never be
	// mistaken for a hash of anything else.
	auditChainDomain = "cardvault.audit.v1"
)

// genesisHash is the prev_hash of the first row of every chain.
var genesisHash = make([]byte, sha256.Size)

// chainRowColumns are the columns chainRow reads, in scanChainRow order.
const chainRowColumns = `id, occurred_at, tenant_id, api_key_id, action, token_id,
	request_id, client_addr, outcome, detail, chain_seq, prev_hash, row_hash`

// chainKey is how SQL names a row's chain, matching the index
// audit_events_chain.
const chainKey = `coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)`

// chainRow is an audit row as the chain sees it: its immutable fields and
// its chain columns (zero until chained).
type chainRow struct {
	id         int64
	occurredAt time.Time
	tenant     uuid.UUID // uuid.Nil for NULL: the system chain
	apiKey     uuid.UUID
	action     string
	token      uuid.UUID
	requestID  string
	clientAddr string
	outcome    string
	detail     []byte // the stored jsonb
	seq        int64
	prev, hash []byte
}

func scanChainRow(row pgx.Row) (chainRow, error) {
	var r chainRow
	var tenant, key, token *uuid.UUID
	var seq *int64
	err := row.Scan(&r.id, &r.occurredAt, &tenant, &key, &r.action, &token,
		&r.requestID, &r.clientAddr, &r.outcome, &r.detail, &seq, &r.prev, &r.hash)
	r.tenant, r.apiKey, r.token = derefUUID(tenant), derefUUID(key), derefUUID(token)
	if seq != nil {
		r.seq = *seq
	}
	return r, err
}

func collectChainRows(rows pgx.Rows) ([]chainRow, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (chainRow, error) { return scanChainRow(r) })
}

// encode returns the canonical encoding of the row's immutable fields and
// sequence number: every field length-prefixed, in a fixed order, with the
// detail re-encoded as canonical JSON, so that equal rows always encode
// alike and no two different rows can.
func (r chainRow) encode() ([]byte, error) {
	detail, err := canonicalJSON(r.detail)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 256+len(detail))
	b = appendField(b, []byte(auditChainDomain))
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(r.seq)))
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(r.id)))
	b = appendField(b, uuidBytes(r.tenant))
	return r.appendEvent(b, detail), nil
}

// appendEvent appends the fields every chain version encodes after its
// own (time, action, API key, token, outcome, request id, client address
// and the canonical detail), in that order.
func (r chainRow) appendEvent(b, detail []byte) []byte {
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(r.occurredAt.UnixMicro())))
	b = appendField(b, []byte(r.action))
	b = appendField(b, uuidBytes(r.apiKey))
	b = appendField(b, uuidBytes(r.token))
	b = appendField(b, []byte(r.outcome))
	b = appendField(b, []byte(r.requestID))
	b = appendField(b, []byte(r.clientAddr))
	return appendField(b, detail)
}

// rowHash returns SHA-256(prev || the row's canonical encoding).
func (r chainRow) rowHash(prev []byte) ([]byte, error) {
	enc, err := r.encode()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(enc)
	return h.Sum(nil), nil
}

// appendField appends v prefixed by its length as a big-endian uint32.
func appendField(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// uuidBytes returns id's 16 bytes, or none for uuid.Nil (SQL NULL).
func uuidBytes(id uuid.UUID) []byte {
	if id == uuid.Nil {
		return nil
	}
	return id[:]
}

// emptyObject is the canonical form of an empty detail; never modified.
var emptyObject = []byte("{}")

// canonicalJSON re-encodes a JSON document with object keys sorted, no
// insignificant whitespace and numbers kept as written, so the hash does
// not depend on how the database happens to print jsonb. It returns an
// error for anything but one JSON value.
func canonicalJSON(doc []byte) ([]byte, error) {
	if string(doc) == "{}" { // most rows: no detail
		return emptyObject, nil // never doc itself: the caller may keep the result after doc is reused
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("audit detail: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("audit detail: trailing data")
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("audit detail: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// chainHead is the newest chained row of a chain and its retention
// checkpoint.
type chainHead struct {
	tenant     uuid.UUID
	seq        int64
	hash       []byte
	prunedSeq  int64
	prunedHash []byte
}

// start returns the sequence number and hash verification of the chain
// starts after: the retention checkpoint, or the genesis.
func (h chainHead) start() (int64, []byte) {
	if h.prunedSeq == 0 {
		return 0, genesisHash
	}
	return h.prunedSeq, h.prunedHash
}

// lockAuditChain takes the chainer's advisory lock for the rest of tx,
// waiting for it when wait and otherwise reporting false when another
// process holds it.
func lockAuditChain(ctx context.Context, tx pgx.Tx, wait bool) (bool, error) {
	if wait {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, auditChainLock)
		return err == nil, err
	}
	var ok bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, auditChainLock).Scan(&ok)
	return ok, err
}

// ChainAudit links every v1 audit row not yet chained into its v1 chain
// (rows written before migration 018 made rows complete when inserted:
// only rows from before the upgrade can be unchained), waiting for a pass
// another process is running, and returns how many rows it chained.
// `cardvault audit verify` calls it first. It returns a domain error when
// the database fails.
func (s *Service) ChainAudit(ctx context.Context) (int, error) {
	return s.chainAll(ctx, true)
}

// chainAll chains batches until none is left; without wait it stops at once
// when another process holds the chainer lock.
func (s *Service) chainAll(ctx context.Context, wait bool) (int, error) {
	total := 0
	for {
		n, err := s.chainBatch(ctx, wait)
		total += n
		if err != nil || n < auditChainBatch {
			return total, err
		}
	}
}

// chainBatch chains up to auditChainBatch unchained rows in id order, in one
// transaction with the heads it advances, and logs the new heads once that
// transaction commits.
func (s *Service) chainBatch(ctx context.Context, wait bool) (int, error) {
	var heads []chainHead
	var n int
	err := s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
		if ok, err := lockAuditChain(ctx, tx, wait); err != nil || !ok {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+chainRowColumns+` FROM audit_events
			WHERE chain_seq IS NULL ORDER BY id LIMIT $1`, auditChainBatch)
		if err != nil {
			return err
		}
		pending, err := collectChainRows(rows)
		if err != nil {
			return err
		}
		n = len(pending)
		heads, err = s.chainRows(ctx, tx, pending)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.logHeads(heads)
	return n, nil
}

// chainRows gives each row, in the order given, the next sequence number
// of its chain and its hashes, stores them and advances the heads, all in
// tx (which must hold the chainer lock). It returns the advanced heads.
func (s *Service) chainRows(ctx context.Context, tx pgx.Tx, pending []chainRow) ([]chainHead, error) {
	if len(pending) == 0 {
		return nil, nil
	}
	heads, err := loadHeads(ctx, tx, pending)
	if err != nil {
		return nil, err
	}
	ids, seqs := make([]int64, len(pending)), make([]int64, len(pending))
	prevs, hashes := make([][]byte, len(pending)), make([][]byte, len(pending))
	var order []uuid.UUID
	for i, r := range pending {
		h, ok := heads[r.tenant]
		if !ok {
			h = &chainHead{tenant: r.tenant, hash: genesisHash}
			heads[r.tenant] = h
		}
		if !contains(order, r.tenant) {
			order = append(order, r.tenant)
		}
		r.seq = h.seq + 1
		if hashes[i], err = r.rowHash(h.hash); err != nil {
			return nil, err
		}
		ids[i], seqs[i], prevs[i] = r.id, r.seq, h.hash
		h.seq, h.hash = r.seq, hashes[i]
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_events a
		SET chain_seq = u.seq, prev_hash = u.prev, row_hash = u.hash
		FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS u(id, seq, prev, hash)
		WHERE a.id = u.id`, ids, seqs, prevs, hashes); err != nil {
		return nil, err
	}
	advanced := make([]chainHead, 0, len(order))
	for _, t := range order {
		advanced = append(advanced, *heads[t])
	}
	return advanced, storeHeads(ctx, tx, advanced, s.clock())
}

func contains(ids []uuid.UUID, id uuid.UUID) bool {
	for _, v := range ids {
		if v == id {
			return true
		}
	}
	return false
}

// loadHeads reads the heads of the chains the rows belong to.
func loadHeads(ctx context.Context, tx pgx.Tx, rows []chainRow) (map[uuid.UUID]*chainHead, error) {
	var keys []uuid.UUID
	for _, r := range rows {
		if !contains(keys, r.tenant) {
			keys = append(keys, r.tenant)
		}
	}
	q, err := tx.Query(ctx, `SELECT tenant_id, seq, hash, pruned_seq, pruned_hash
		FROM audit_chain_heads WHERE tenant_id = ANY($1)`, keys)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(q, func(r pgx.CollectableRow) (chainHead, error) { return scanHead(r) })
	if err != nil {
		return nil, err
	}
	heads := make(map[uuid.UUID]*chainHead, len(keys))
	for i := range found {
		heads[found[i].tenant] = &found[i]
	}
	return heads, nil
}

func scanHead(row pgx.Row) (chainHead, error) {
	var h chainHead
	err := row.Scan(&h.tenant, &h.seq, &h.hash, &h.prunedSeq, &h.prunedHash)
	return h, err
}

// storeHeads writes the advanced heads, leaving their checkpoints alone.
func storeHeads(ctx context.Context, tx pgx.Tx, heads []chainHead, now time.Time) error {
	tenants, seqs, hashes := make([]uuid.UUID, len(heads)), make([]int64, len(heads)), make([][]byte, len(heads))
	for i, h := range heads {
		tenants[i], seqs[i], hashes[i] = h.tenant, h.seq, h.hash
	}
	_, err := tx.Exec(ctx, `INSERT INTO audit_chain_heads (tenant_id, seq, hash, updated_at)
		SELECT t, s, h, $4 FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS u(t, s, h)
		ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
		                                      updated_at = excluded.updated_at`,
		tenants, seqs, hashes, now)
	return err
}

// logHeads logs every advanced head at info level, so that an operator can
// ship heads off the box and later prove the chain was not rewritten.
func (s *Service) logHeads(heads []chainHead) {
	for _, h := range heads {
		s.log.Info("audit chain head", "chain", chainName(h.tenant), "seq", h.seq, "hash", hex.EncodeToString(h.hash))
	}
}

// chainName is how reports and logs name a chain: its tenant id, or
// "system".
func chainName(tenant uuid.UUID) string {
	if tenant == vault.SystemChain {
		return "system"
	}
	return tenant.String()
}
