package postgres

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// A read batch is written in one round trip when it can (auditidle.go):
// its audit rows are chained in the vault after idle lane heads, and one
// statement, its own transaction, finds the tokens, locks the lanes where
// they still stand at those heads, and only when every lane was so locked
// and every token found, advances the lanes and inserts the rows; it
// answers whether it did (ok). Otherwise it wrote nothing and the batch is
// redone the ordinary way (readTokens). A request still answers only once
// the statement's commit is durable: pgx reports the rows' error only
// after the server's ReadyForQuery, which follows the commit.

// readChainedSQL is that statement: lookupRequestsSQL's $1–$3, the audit
// rows as insertAuditRowsSQL's first thirteen arrays ($4–$16), the lanes
// ($17 chains, $18 lanes, $19 and $20 the heads' seqs and hashes the rows
// were chained after, $21 and $22 the new ones) and $23 now. It answers
// ord, ok and the token columns of each request whose token it found. A
// lane moved by a transaction that commits while the statement waits for
// its lock is not locked (the lock rechecks the row's newest version).
var readChainedSQL = `
	WITH ` + lookupRequestsSQL + `, found AS (
		SELECT r.ord, ` + qualified("k", tokenColumns) + `
		FROM req r JOIN tokens k ON k.id = r.token_id AND k.tenant_id = r.tenant_id
	), u AS (
		SELECT * FROM unnest($17::uuid[], $18::smallint[], $19::bigint[], $20::bytea[], $21::bigint[], $22::bytea[])
			AS u(chain_id, lane, prev_seq, prev_hash, seq, hash)
	), held AS (
		SELECT l.chain_id FROM audit_lanes l JOIN u ON l.chain_id = u.chain_id AND l.lane = u.lane
		WHERE l.seq = u.prev_seq AND l.hash = u.prev_hash
		FOR UPDATE OF l
	), ok AS (
		SELECT (SELECT count(*) FROM held) = cardinality($17::uuid[])
		   AND (SELECT count(*) FROM found) = cardinality($3::uuid[]) AS ok
	), lane AS (
		UPDATE audit_lanes l SET seq = u.seq, hash = u.hash, updated_at = $23
		FROM u WHERE l.chain_id = u.chain_id AND l.lane = u.lane AND (SELECT ok FROM ok)
	), ins AS (
		INSERT INTO audit_events (` + auditInsertColumns + `, chain_lane, chain_seq, prev_hash, row_hash)
		SELECT * FROM unnest($4::timestamptz[], $5::uuid[], $6::uuid[], $7::text[], $8::uuid[],
		                     $9::text[], $10::text[], $11::text[], $12::jsonb[],
		                     $13::smallint[], $14::bigint[], $15::bytea[], $16::bytea[])
		WHERE (SELECT ok FROM ok)
	)
	SELECT ord, (SELECT ok FROM ok), ` + tokenColumns + ` FROM found`

// errNotChained means a read batch could not be written in one statement
// (no idle head, a lane moved, a token not found, a deadlock): it wrote
// nothing and is to be redone the ordinary way.
var errNotChained = errors.New("vault: read batch not chained")

// readTokensChained writes a read batch in one statement after idle lane
// heads and marks each lookup found. It returns errNotChained, a domain
// error when a chain key cannot be had, or the driver error.
func (s *Service) readTokensChained(ctx context.Context, batch []*lookup) error {
	events := make([]vault.AuditEvent, len(batch))
	for i, l := range batch {
		events[i] = l.ev
	}
	chains, keys, err := s.auditChains(ctx, lookupTenants(batch))
	if err != nil {
		return err
	}
	heads, ok := s.audit.idle.take(chains)
	if !ok {
		return errNotChained
	}
	before := lanesOf(chains, heads)
	w, err := chainEvents(events, heads, keys)
	if err != nil {
		return err
	}
	args := append(lookupArgs(batch), w.args[:13]...)
	args = append(append(args, before.args(heads)...), s.clock())
	rows, err := s.db.Query(ctx, readChainedSQL, args...)
	wrote := false // no row answered: no token found, nothing written
	if err == nil {
		err = scanLookups(rows, batch, func(_ *tokenRow, ok bool) { wrote = ok })
	}
	switch {
	case isDeadlock(err) || (err == nil && !wrote):
		return errNotChained
	case err == nil:
		s.audit.idle.put(heads)
	}
	return err
}

// laneHeads are the heads of one lane of each chain, as parallel arrays.
type laneHeads struct {
	chains []uuid.UUID
	lanes  []int16
	seqs   []int64
	hashes [][]byte
}

// lanesOf returns the heads of chains as heads holds them now.
func lanesOf(chains []uuid.UUID, heads map[uuid.UUID]*laneHead) laneHeads {
	l := laneHeads{chains: chains}
	for _, c := range chains {
		h := heads[c]
		l.lanes, l.seqs, l.hashes = append(l.lanes, h.lane), append(l.seqs, h.seq), append(l.hashes, h.hash)
	}
	return l
}

// args returns readChainedSQL's $17–$22: the lanes as they stood (l) and
// as heads leaves them.
func (l laneHeads) args(heads map[uuid.UUID]*laneHead) []any {
	after := lanesOf(l.chains, heads)
	return []any{l.chains, l.lanes, l.seqs, l.hashes, after.seqs, after.hashes}
}
