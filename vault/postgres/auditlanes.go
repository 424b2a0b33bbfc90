package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Audit rows are written once (migration 018): the transaction that writes
// a row locks one lane head of the row's chain, computes the row's sequence
// number, previous hash and HMAC in Go, inserts the row with them and
// advances the head, all before its commit. A chain has auditLaneCount
// lanes, each a chain of its own; a transaction takes the lowest lane no
// other transaction holds (SKIP LOCKED), so concurrent transactions of one
// tenant do not queue on one head, while a quiet tenant writes one lane
// only. A transaction finding every lane held waits for one, picked
// round-robin. The row hash is HMAC-SHA256 under the chain's key, which is stored
// wrapped by the root KEK: whoever can write to the database but cannot use
// the KEK cannot compute a valid hash for a row they edit or add.

const (
	// auditLaneCount is how many lanes a chain has.
	auditLaneCount = 8
	// auditChainDomainV2 starts every encoded v2 row.
	auditChainDomainV2 = "cardvault.audit.v2"
	// auditKeyADPrefix starts the associated data of a wrapped chain key.
	auditKeyADPrefix = "cardvault/audit-chain-key/"
)

// auditKeyAD is the associated data binding a wrapped key to its chain.
func auditKeyAD(chain uuid.UUID) []byte {
	return []byte(auditKeyADPrefix + chain.String())
}

// auditKeys caches the unwrapped chain keys (a chain is cached once its
// lanes exist too). Keys never change, so they are cached for the life of
// the process.
type auditKeys struct {
	mu   sync.Mutex
	keys map[uuid.UUID][]byte
	next atomic.Uint32 // the lane the next transaction finding every lane held waits for
	idle idleHeads     // the heads read batches left (auditidle.go)
	// readerTurn turns the order in which this process's read batches take
	// the upper half of the lanes (lockLanesSQL), picked at random at start.
	readerTurn int
}

// laneEnd is the end of a chain's lanes a transaction takes its lane from.
type laneEnd bool

const (
	// writerLanes: the lowest lane no other transaction holds.
	writerLanes laneEnd = false
	// readerLanes: one of the upper half, in the process's own turn, for
	// read batches, whose heads are then kept idle for the next read batch
	// (auditidle.go).
	readerLanes laneEnd = true
)

// laneHead is a lane's newest row as its lock read it.
type laneHead struct {
	chain uuid.UUID
	lane  int16
	seq   int64
	hash  []byte
}

// chainOf returns the chain of a row with tenant id t.
func chainOf(t uuid.UUID) uuid.UUID { return t }

// auditChainKey returns the chain's HMAC key, creating and storing it
// (wrapped by the root KEK) on first use, and makes sure the chain's lanes
// exist. It returns a KindUnavailable error when the KEK fails and the
// driver error when the database does.
func (s *Service) auditChainKey(ctx context.Context, chain uuid.UUID) ([]byte, error) {
	s.audit.mu.Lock()
	k, ok := s.audit.keys[chain]
	s.audit.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := s.loadAuditKey(ctx, chain)
	if err != nil {
		return nil, err
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO audit_lanes (chain_id, lane, seq, hash, updated_at)
		SELECT $1, l, 0, $2, $3 FROM generate_series(0, $4 - 1) AS l
		ON CONFLICT DO NOTHING`, chain, genesisHash, s.clock(), auditLaneCount); err != nil {
		return nil, err
	}
	s.audit.mu.Lock()
	if s.audit.keys == nil {
		s.audit.keys = map[uuid.UUID][]byte{}
	}
	s.audit.keys[chain] = k
	s.audit.mu.Unlock()
	return k, nil
}

// loadAuditKey reads and unwraps the chain's key, generating it first when
// the chain has none.
func (s *Service) loadAuditKey(ctx context.Context, chain uuid.UUID) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, vault.Internal(err)
	}
	w, err := s.keys.kek.Encrypt(fresh, auditKeyAD(chain))
	if err != nil {
		return nil, keyError(chain, err)
	}
	var wrapped []byte
	err = s.db.QueryRow(ctx, `WITH ins AS (
			INSERT INTO audit_chain_keys (chain_id, wrapped, created_at, updated_at) VALUES ($1, $2, $3, $3)
			ON CONFLICT (chain_id) DO NOTHING RETURNING wrapped)
		SELECT wrapped FROM ins UNION ALL SELECT wrapped FROM audit_chain_keys WHERE chain_id = $1`,
		chain, w, s.clock()).Scan(&wrapped)
	if err != nil {
		return nil, err
	}
	k, err := s.keys.kek.Decrypt(wrapped, auditKeyAD(chain))
	if err != nil {
		return nil, keyError(chain, fmt.Errorf("unwrap audit chain key: %w", err))
	}
	return k, nil
}

// lockLanesSQL locks, for each chain in $1, the first of its lanes no other
// transaction holds (one this transaction holds already counts as free),
// and answers its head: for writers the lowest; for readers one of the
// upper half first, the process's own turn of them ($2) first, so that two
// vault processes seldom keep the head of the same lane (auditidle.go).
var lockLanesSQL = map[laneEnd]string{
	writerLanes: lockLanesOrderedSQL("lane"),
	readerLanes: lockLanesOrderedSQL(fmt.Sprintf("lane >= %[1]d DESC, (lane + $2::int) %% %[1]d DESC", auditLaneCount/2)),
}

// lockLaneSQL is lockLanesSQL for one chain, $1 (a batch of one tenant's
// requests, the common case). PostgreSQL plans the array form anew at every
// execution, its generic plan costed for ten chains: 0.07–0.14 ms of
// planning for a 0.03 ms lookup, in every audited batch. It keeps a generic
// plan of this form.
var lockLaneSQL = map[laneEnd]string{
	writerLanes: lockLaneOrderedSQL("$1", "lane"),
	readerLanes: lockLaneOrderedSQL("$1", fmt.Sprintf("lane >= %[1]d DESC, (lane + $2::int) %% %[1]d DESC", auditLaneCount/2)),
}

// lockLanesQuery returns the statement locking a lane of each of chains
// from end, and its arguments.
func (s *Service) lockLanesQuery(end laneEnd, chains []uuid.UUID) (string, []any) {
	sql, chain := lockLanesSQL[end], any(chains)
	if len(chains) == 1 {
		sql, chain = lockLaneSQL[end], chains[0]
	}
	if end == readerLanes {
		return sql, []any{chain, s.audit.readerTurn}
	}
	return sql, []any{chain}
}

// lockLanesOrderedSQL returns lockLanesSQL taking the first lane in order.
func lockLanesOrderedSQL(order string) string {
	return `
	SELECT l.chain_id, l.lane, l.seq, l.hash FROM unnest($1::uuid[]) AS c(id)
	CROSS JOIN LATERAL (` + lockLaneOrderedSQL("c.id", order) + `) l`
}

// lockLaneOrderedSQL returns the lock of chain's first free lane in order
// (lockLaneSQL for chain $1; lockLanesOrderedSQL's for each chain).
func lockLaneOrderedSQL(chain, order string) string {
	return `
		SELECT chain_id, lane, seq, hash FROM audit_lanes WHERE chain_id = ` + chain + `
		ORDER BY ` + order + ` LIMIT 1 FOR UPDATE SKIP LOCKED`
}

// lockLanes locks one lane of each chain, taken from end, for the rest of
// q's transaction and returns their heads; when every lane of a chain is
// held, it waits for one. q must be in a transaction.
func (s *Service) lockLanes(ctx context.Context, q querier, end laneEnd, chains []uuid.UUID) (map[uuid.UUID]*laneHead, error) {
	sql, args := s.lockLanesQuery(end, chains)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	heads, err := scanLaneHeads(rows)
	if err != nil {
		return nil, err
	}
	return heads, s.awaitLanes(ctx, q, chains, heads)
}

// scanLaneHeads reads lockLanesSQL's answer: the head of each lane it
// locked, by chain. It returns the rows' error.
func scanLaneHeads(rows pgx.Rows) (map[uuid.UUID]*laneHead, error) {
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (laneHead, error) {
		var h laneHead
		err := r.Scan(&h.chain, &h.lane, &h.seq, &h.hash)
		return h, err
	})
	if err != nil {
		return nil, err
	}
	heads := make(map[uuid.UUID]*laneHead, len(found))
	for i := range found {
		heads[found[i].chain] = &found[i]
	}
	return heads, nil
}

// awaitLanes locks, for each of chains that heads has no lane of (every
// lane was held when lockLanesSQL ran), one lane picked round-robin,
// waiting for it, and adds its head to heads; then it forgets the idle
// heads of the lanes now held (auditidle.go). It returns errNoLanes when
// the chain has no lanes, or the driver error.
func (s *Service) awaitLanes(ctx context.Context, q querier, chains []uuid.UUID, heads map[uuid.UUID]*laneHead) error {
	for _, c := range chains {
		if heads[c] != nil {
			continue
		}
		h := laneHead{chain: c, lane: int16(s.audit.next.Add(1) % auditLaneCount)}
		err := q.QueryRow(ctx, `SELECT seq, hash FROM audit_lanes WHERE chain_id = $1 AND lane = $2 FOR UPDATE`,
			c, h.lane).Scan(&h.seq, &h.hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNoLanes
		}
		if err != nil {
			return err
		}
		heads[c] = &h
	}
	s.audit.idle.drop(heads)
	return nil
}

// errNoLanes means a chain the process knew has no lanes any more (its
// tables were emptied): its cached key is dropped and it is set up again.
var errNoLanes = errors.New("vault: audit chain has no lanes")

// auditRowV2 is a v2 audit row as it is written and verified.
type auditRowV2 struct {
	chainRow
	lane int16
	// canonical says detail is canonical JSON already.
	canonical bool
}

// encodeV2 returns the canonical encoding of a v2 row: every field
// length-prefixed in a fixed order, the chain, lane, sequence number and
// previous hash included, the detail as canonical JSON.
func (r auditRowV2) encodeV2() ([]byte, error) {
	return r.appendV2(make([]byte, 0, 320+len(r.detail)))
}

// appendV2 appends the row's canonical encoding to b.
func (r auditRowV2) appendV2(b []byte) ([]byte, error) {
	detail := r.detail
	if !r.canonical {
		var err error
		if detail, err = canonicalJSON(r.detail); err != nil {
			return nil, err
		}
	}
	b = appendField(b, []byte(auditChainDomainV2))
	b = appendField(b, r.tenant[:])
	b = appendField(b, binary.BigEndian.AppendUint16(nil, uint16(r.lane)))
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(r.seq)))
	b = appendField(b, r.prev)
	return r.appendEvent(b, detail), nil
}

// macV2 returns HMAC-SHA256(key, the row's canonical encoding).
func (r auditRowV2) macV2(key []byte) ([]byte, error) {
	enc, err := r.encodeV2()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write(enc)
	return m.Sum(nil), nil
}

// auditWrite is a batch of v2 rows ready to be inserted, with the lane
// heads they advance: insertAuditRowsSQL and its arguments, and the heads
// as the rows leave them.
type auditWrite struct {
	args  []any
	heads map[uuid.UUID]*laneHead
}

// insertAuditRowsSQL inserts v2 rows ($1–$13 as arrays) and advances the
// lanes' heads ($14 chains, $15 lanes, $16 seqs, $17 hashes, $18 now).
const insertAuditRowsSQL = `
	WITH ins AS (
		INSERT INTO audit_events (` + auditInsertColumns + `, chain_lane, chain_seq, prev_hash, row_hash)
		SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[],
		                     $6::text[], $7::text[], $8::text[], $9::jsonb[],
		                     $10::smallint[], $11::bigint[], $12::bytea[], $13::bytea[])
	)
	UPDATE audit_lanes l SET seq = u.seq, hash = u.hash, updated_at = $18
	FROM unnest($14::uuid[], $15::smallint[], $16::bigint[], $17::bytea[]) AS u(chain_id, lane, seq, hash)
	WHERE l.chain_id = u.chain_id AND l.lane = u.lane`

// prepareAudit locks a lane of each chain the events belong to, from end
// (q must be in a transaction, which holds the locks until it ends), and
// chains the events in the order given. The caller runs (or queues) the
// returned write in the same transaction. It returns a domain error when a
// chain key cannot be had and the driver error when the database fails.
func (s *Service) prepareAudit(ctx context.Context, q querier, end laneEnd, events []vault.AuditEvent) (*auditWrite, error) {
	w, err := s.prepareAuditOnce(ctx, q, end, events)
	if errors.Is(err, errNoLanes) {
		s.forgetAuditKeys()
		w, err = s.prepareAuditOnce(ctx, q, end, events)
	}
	return w, err
}

// forgetAuditKeys drops the cached chain keys, so that the next use of a
// chain sets its lanes up again (see errNoLanes).
func (s *Service) forgetAuditKeys() {
	s.audit.mu.Lock()
	s.audit.keys = nil
	s.audit.mu.Unlock()
	s.audit.idle.clear()
}

func (s *Service) prepareAuditOnce(ctx context.Context, q querier, end laneEnd, events []vault.AuditEvent) (*auditWrite, error) {
	chains, keys, err := s.auditChains(ctx, tenantsOf(events, func(ev vault.AuditEvent) uuid.UUID { return ev.TenantID }))
	if err != nil {
		return nil, err
	}
	heads, err := s.lockLanes(ctx, q, end, chains)
	if err != nil {
		return nil, err
	}
	return chainEvents(events, heads, keys)
}

// tenantsOf returns the tenant of each of xs, as tenant reads it.
func tenantsOf[T any](xs []T, tenant func(T) uuid.UUID) []uuid.UUID {
	out := make([]uuid.UUID, len(xs))
	for i, x := range xs {
		out[i] = tenant(x)
	}
	return out
}

// auditChains returns the chains the audit rows of tenants belong to, once
// each and sorted (the order their lanes are locked in), and their keys. It
// returns auditChainKey's errors.
func (s *Service) auditChains(ctx context.Context, tenants []uuid.UUID) ([]uuid.UUID, map[uuid.UUID][]byte, error) {
	keys := map[uuid.UUID][]byte{}
	var chains []uuid.UUID
	for _, t := range tenants {
		c := chainOf(t)
		if _, ok := keys[c]; ok {
			continue
		}
		k, err := s.auditChainKey(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		keys[c], chains = k, append(chains, c)
	}
	sort.Slice(chains, func(i, j int) bool { return string(chains[i][:]) < string(chains[j][:]) })
	return chains, keys, nil
}

// chainEvents gives each event the next sequence number of its chain's
// locked lane and its hash, and lays the rows and the advanced heads out as
// insertAuditRowsSQL's arguments. It returns a KindInternal error for an
// event of a chain heads holds no lane of.
func chainEvents(events []vault.AuditEvent, heads map[uuid.UUID]*laneHead, keys map[uuid.UUID][]byte) (*auditWrite, error) {
	cols, err := auditColumns(events)
	if err != nil {
		return nil, err
	}
	n := len(events)
	lanes, seqs, prevs, hashes := make([]int16, n), make([]int64, n), make([][]byte, n), make([][]byte, n)
	details := cols[8].([]string)
	advanced := make(map[uuid.UUID]*laneHead, len(heads))
	for i, ev := range events {
		h := heads[chainOf(ev.TenantID)]
		if h == nil {
			return nil, vault.Internal(fmt.Errorf("audit: no lane held for chain %s", chainOf(ev.TenantID)))
		}
		advanced[h.chain] = h
		r := auditRowV2{lane: h.lane, chainRow: chainRow{occurredAt: ev.OccurredAt, tenant: ev.TenantID,
			apiKey: ev.APIKeyID, action: string(ev.Action), token: ev.TokenID, requestID: ev.RequestID,
			clientAddr: ev.ClientAddr, outcome: string(ev.Outcome), detail: []byte(details[i]),
			seq: h.seq + 1, prev: h.hash}}
		if hashes[i], err = r.macV2(keys[h.chain]); err != nil {
			return nil, vault.Internal(err)
		}
		lanes[i], seqs[i], prevs[i] = h.lane, r.seq, h.hash
		h.seq, h.hash = r.seq, hashes[i]
	}
	var hc []uuid.UUID
	var hl []int16
	var hs []int64
	var hh [][]byte
	for _, h := range advanced {
		hc, hl, hs, hh = append(hc, h.chain), append(hl, h.lane), append(hs, h.seq), append(hh, h.hash)
	}
	args := append(cols, lanes, seqs, prevs, hashes, hc, hl, hs, hh)
	return &auditWrite{args: args, heads: advanced}, nil
}

// exec runs w with q.
func (w *auditWrite) exec(ctx context.Context, q querier, now time.Time) error {
	_, err := q.Exec(ctx, insertAuditRowsSQL, append(w.args, now)...)
	return err
}

// queue adds w to b.
func (w *auditWrite) queue(b *pgx.Batch, now time.Time) {
	b.Queue(insertAuditRowsSQL, append(w.args, now)...)
}

// inAuditedTx runs sql in a transaction of its own on one connection,
// pipelined with its BEGIN and, when the tenants its audit rows can belong
// to are known (tenants not nil), with the lock of a lane of each of their
// chains, taken from end; read gets its rows and returns the audit events
// they call for (each of one of tenants), which are then chained and
// inserted with the COMMIT in one more round trip. Without tenants, the
// lanes are locked in a round trip of their own before that. The
// transaction commits only when read returns nil; when read returns
// errWroteNothing it is rolled back and inAuditedTx returns nil. Errors are
// returned untranslated.
func (s *Service) inAuditedTx(ctx context.Context, end laneEnd, sql string, args []any, tenants []uuid.UUID, read func(pgx.Rows) ([]vault.AuditEvent, error)) error {
	return s.inAuditedTxWrites(ctx, end, sql, args, tenants, func(rows pgx.Rows) ([]vault.AuditEvent, batchWrite, error) {
		events, err := read(rows)
		return events, nil, err
	})
}

// batchWrite is what a transaction writes in its commit's round trip
// before its audit rows (inAuditedTxWrites).
type batchWrite interface {
	// queue adds its statements to b and returns how many it added.
	queue(b *pgx.Batch) int
	// read reads their answers; it returns the first error.
	read(br pgx.BatchResults) error
}

// inAuditedTxWrites is inAuditedTx whose read may also return writes (nil
// for none) that the commit's round trip sends before the audit rows.
func (s *Service) inAuditedTxWrites(ctx context.Context, end laneEnd, sql string, args []any, tenants []uuid.UUID, read func(pgx.Rows) ([]vault.AuditEvent, batchWrite, error)) error {
	var pre *lockedLanes
	if tenants != nil {
		chains, keys, err := s.auditChains(ctx, tenants)
		if err != nil {
			return err
		}
		pre = &lockedLanes{chains: chains, keys: keys}
	}
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release() // a connection left inside a transaction is destroyed, never reused
	events, side, err := s.runAudited(ctx, conn, end, sql, args, pre, read)
	if err == nil {
		err = s.commitAudited(ctx, conn, end, events, pre, side)
	}
	if err != nil {
		rollback(conn)
	}
	if errors.Is(err, errWroteNothing) {
		return nil
	}
	return err
}

// errWroteNothing, returned by an inAuditedTx read, says its statement
// wrote nothing and calls for no audit row: the transaction, which then
// holds nothing but its lanes' locks (and the WAL records of those), is
// rolled back rather than committed, so no durable commit (a WAL flush to
// the disk) is spent on it. A statement that wrote anything must not
// return it, even with no audit row to write.
var errWroteNothing = errors.New("vault: the statement wrote nothing")

// lockedLanes are lanes locked with a transaction's first statement: a
// lane of each of chains, their keys and, once read, their heads.
type lockedLanes struct {
	chains []uuid.UUID
	keys   map[uuid.UUID][]byte
	heads  map[uuid.UUID]*laneHead
}

// runAudited sends BEGIN (its statements with their generic plans,
// genericplans.go), sql and, with pre, the lock of pre's lanes in one
// round trip, and returns what read makes of sql's rows; pre gets the
// heads. A chain left without lanes (its tables emptied under the
// process) makes pre's heads nil: commitAudited then sets it up again.
func (s *Service) runAudited(ctx context.Context, conn *pgxpool.Conn, end laneEnd, sql string, args []any, pre *lockedLanes, read func(pgx.Rows) ([]vault.AuditEvent, batchWrite, error)) ([]vault.AuditEvent, batchWrite, error) {
	var b pgx.Batch
	queueBeginGeneric(&b)
	b.Queue(sql, args...)
	if pre != nil {
		lanes, args := s.lockLanesQuery(end, pre.chains)
		b.Queue(lanes, args...)
	}
	br := conn.SendBatch(ctx, &b)
	var events []vault.AuditEvent
	var side batchWrite
	err := readBeginGeneric(br)
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			events, side, err = read(rows)
		}
	}
	if err == nil && pre != nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			pre.heads, err = scanLaneHeads(rows)
		}
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err == nil && pre != nil {
		err = s.awaitLanes(ctx, conn, pre.chains, pre.heads)
	}
	if errors.Is(err, errNoLanes) {
		s.forgetAuditKeys()
		pre.heads, err = nil, nil
	}
	return events, side, err
}

// errRolledBack means COMMIT answered ROLLBACK: the transaction had failed.
var errRolledBack = errors.New("vault: the transaction was rolled back")

// commitAudited chains and inserts events in conn's transaction, after
// the heads of pre's lanes when it holds them, else on lanes it locks from
// end, and commits it, side's statements (when side is not nil), the
// insert and the COMMIT in one round trip. A read batch's heads
// (readerLanes) are then kept idle.
func (s *Service) commitAudited(ctx context.Context, conn *pgxpool.Conn, end laneEnd, events []vault.AuditEvent, pre *lockedLanes, side batchWrite) error {
	var b pgx.Batch
	sideN := 0
	if side != nil {
		sideN = side.queue(&b)
	}
	var w *auditWrite
	if len(events) > 0 {
		var err error
		if pre != nil && pre.heads != nil {
			w, err = chainEvents(events, pre.heads, pre.keys)
		} else {
			w, err = s.prepareAudit(ctx, conn, end, events)
		}
		if err != nil {
			return err
		}
		w.queue(&b, s.clock())
	}
	b.Queue("COMMIT")
	err := readCommit(conn.SendBatch(ctx, &b), side, sideN, b.Len())
	if err == nil && w != nil && end == readerLanes {
		s.audit.idle.put(w.heads)
	}
	return err
}

// readCommit reads and closes the n answers of a round trip that ends
// with COMMIT: side's first (sideN of them), then each statement's, the
// last the COMMIT's. It returns the first error, errRolledBack when the
// COMMIT answered that the transaction was rolled back.
func readCommit(br pgx.BatchResults, side batchWrite, sideN, n int) error {
	var err error
	if sideN > 0 {
		err = side.read(br)
	}
	var tag pgconn.CommandTag
	for i := sideN; i < n && err == nil; i++ {
		tag, err = br.Exec()
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err == nil && tag.String() != "COMMIT" {
		err = errRolledBack
	}
	return err
}

// rewrapAuditKeys moves every audit chain key (the chains of destroyed
// tenants and the system chain included) from the configured root KEK to
// newKEK, in one transaction, and returns how many it moved (with dryRun,
// how many it would move); a key only newKEK opens is already done. It
// returns a KindUnavailable error when a key opens under neither KEK.
func (s *Service) rewrapAuditKeys(ctx context.Context, newKEK tink.AEAD, dryRun bool) (int, error) {
	n := 0
	err := s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT chain_id, wrapped FROM audit_chain_keys ORDER BY chain_id FOR UPDATE`)
		if err != nil {
			return err
		}
		type wrappedKey struct {
			chain uuid.UUID
			w     []byte
		}
		keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (wrappedKey, error) {
			var k wrappedKey
			return k, r.Scan(&k.chain, &k.w)
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			clear, err := s.keys.kek.Decrypt(k.w, auditKeyAD(k.chain))
			if err != nil {
				if _, err2 := newKEK.Decrypt(k.w, auditKeyAD(k.chain)); err2 == nil {
					continue
				}
				return keyError(k.chain, fmt.Errorf("unwrap audit chain key: %w", err))
			}
			n++
			if dryRun {
				continue
			}
			nw, err := newKEK.Encrypt(clear, auditKeyAD(k.chain))
			if err != nil {
				return keyError(k.chain, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE audit_chain_keys SET wrapped = $2, updated_at = $3 WHERE chain_id = $1`,
				k.chain, nw, s.clock()); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}
