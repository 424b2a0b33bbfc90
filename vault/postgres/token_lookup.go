package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Reads and reveals of concurrent requests are group-committed (see
// groupCommit): one statement finds every token of the batch and writes
// every audit row, and one commit makes them durable, instead of a query
// and a commit per request. A request still answers only once its own
// audit row has committed, and only for a token of its own tenant.

// lookupBatchTimeout bounds one read or reveal batch (see batchTimeout).
const lookupBatchTimeout = batchTimeout

// readBatchesInFlight is how many read batches may be written at once:
// while one waits for its commit to reach the disk, the next can run its
// statement (measured: read 2,700-3,150 -> 5,000-5,600 rps, p99 45-51 ->
// 18-23 ms, the same CPU per read). Reveals stay one batch at a time: a
// reveal batch is a transaction of two round trips, and two at once made
// smaller batches and cost more CPU per reveal (0.13 -> 0.16-0.20 ms in the
// vault, 0.14-0.18 -> 0.21-0.27 ms in PostgreSQL) for no more reveals.
const readBatchesInFlight = 2

// readOverlapAt is how many reads must be waiting for a second read batch
// to start while one is in flight: a batch of one or two beside another
// cost more per read than waiting for the one in flight (idle machine, 5 s
// read phases, 100,000 tokens, alternating: starting at once 8,353 and 8,549
// reads/s, PostgreSQL 0.069-0.070 ms a read; at 8 waiting 9,163 and 9,447,
// 0.065 ms; at 16 9,615 and 9,225, 0.059-0.062 ms). Under load, when commits
// are slow and second batches pay, 8 of the bench's 32 requests in flight
// wait within a fraction of a commit.
const readOverlapAt = 8

// lookup is one request of a read or reveal batch: the audit event says
// which token (TokenID) of which tenant (TenantID); the batch fills in what
// it found.
type lookup struct {
	ev    vault.AuditEvent
	tk    *tenantKeys // the tenant's keys (reveals decrypt inside the batch)
	found bool
	row   tokenRow       // as stored before the reveal destroyed its CVC
	out   vault.Revealed // a reveal's card
	err   error          // why a reveal's card did not decrypt
}

// lookupBatch is a group commit of lookups.
type lookupBatch = groupCommit[*lookup]

// lookupRequestsSQL unnests when ($1), whose ($2) and which token ($3)
// each request of the batch names into the rows of req, numbered by ord.
// The rest of each request's audit event is sent once, with its audit row.
const lookupRequestsSQL = `req AS (
		SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[]) WITH ORDINALITY
		AS r(occurred_at, tenant_id, token_id, ord)
	)`

// readTokensSQL finds the tokens of a read batch; the batch then writes
// an audit row for each request whose token it found. It answers ord and
// the token columns of each found request.
var readTokensSQL = `
	WITH ` + lookupRequestsSQL + `
	SELECT r.ord, ` + qualified("k", tokenColumns) + `
	FROM req r JOIN tokens k ON k.id = r.token_id AND k.tenant_id = r.tenant_id`

// cvcLockedSQL returns the CTEs a reveal or a forward reads its tokens
// with: k, the tokens the condition pick names, as of the statement's
// snapshot; cvc, those of them that still hold a CVC, looked up again and
// locked in id order (so that concurrent batches cannot deadlock); t, k's
// columns with the CVC as locked. A token without a CVC in the snapshot is
// read once and not locked: nothing is written to its page. The CVC comes
// from the locked row, never from the snapshot: a batch that waited for
// another's lock finds the CVC gone when it gets the row, and answers none.
func cvcLockedSQL(pick string) string {
	return `k AS (
		SELECT ` + tokenColumns + ` FROM tokens WHERE ` + pick + `
	), cvc AS (
		SELECT id, cvc_ct FROM tokens
		WHERE id IN (SELECT id FROM k WHERE cvc_ct IS NOT NULL)
		  AND cvc_ct IS NOT NULL -- checked again on the row as locked
		ORDER BY id FOR UPDATE
	), t AS (
		SELECT ` + strings.Replace(qualified("k", tokenColumns), "k.cvc_ct", "cvc.cvc_ct", 1) + `
		FROM k LEFT JOIN cvc ON cvc.id = k.id
	)`
}

// revealTokensSQL reads the batch's tokens, locking and destroying the
// CVCs they still hold (cvcLockedSQL); an audit row is then written for
// each request whose token it found, with cvc_revealed added to its detail
// (revealAudit). Only the first request of the batch for a token (first)
// may receive its CVC. It answers ord, first and the token columns, the
// CVC as it was before it was destroyed. Destroying clears cvc_ct alone:
// cvc_expires_at, which means nothing without it, stays until the sweeper
// takes its queue entry, so no index of tokens changes and PostgreSQL
// rewrites the row within its page (HOT).
var revealTokensSQL = `
	WITH ` + lookupRequestsSQL + `, ` + cvcLockedSQL(`(id, tenant_id) IN (SELECT token_id, tenant_id FROM req)`) + `, gone AS (
		UPDATE tokens SET cvc_ct = NULL FROM cvc WHERE tokens.id = cvc.id
	), hit AS (
		SELECT r.*, r.ord = min(r.ord) OVER (PARTITION BY r.token_id) AS first
		FROM req r JOIN t ON t.id = r.token_id AND t.tenant_id = r.tenant_id
	)
	SELECT h.ord, h.first, ` + qualified("t", tokenColumns) + ` FROM hit h JOIN t ON t.id = h.token_id`

// qualified prefixes every column of the comma-separated list cols with
// alias.
func qualified(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// readTokens runs a read batch: it marks each lookup whose token it found
// and commits the audit rows of those, in one statement after idle lane
// heads when it can (token_read_chained.go), else in a transaction that
// finds the tokens, then locks the lanes, then writes the rows.
func (s *Service) readTokens(batch []*lookup) error {
	ctx, cancel := context.WithTimeout(context.Background(), lookupBatchTimeout)
	defer cancel()
	err := s.readTokensChained(ctx, batch)
	if !errors.Is(err, errNotChained) {
		return dbError(err, "token")
	}
	for _, l := range batch {
		l.found = false
	}
	err = s.inAuditedTx(ctx, readerLanes, readTokensSQL, lookupArgs(batch), lookupTenants(batch), func(rows pgx.Rows) ([]vault.AuditEvent, error) {
		if err := scanLookups(rows, batch, nil); err != nil {
			return nil, err
		}
		var events []vault.AuditEvent
		for _, l := range batch {
			if l.found {
				events = append(events, l.ev)
			}
		}
		return events, nil
	})
	return dbError(err, "token")
}

// revealAudit returns the audit event of a found reveal: its event with
// cvc_revealed added to the detail, true when this request receives the
// token's unexpired CVC.
func revealAudit(l *lookup) vault.AuditEvent {
	ev := l.ev
	revealed := l.row.sealed.cvc != nil && l.row.sealed.cvcExpiresAt != nil && ev.OccurredAt.Before(*l.row.sealed.cvcExpiresAt)
	d := make(map[string]any, len(ev.Detail)+1)
	d["cvc_revealed"] = revealed
	for k, v := range ev.Detail {
		d[k] = v
	}
	ev.Detail = d
	return ev
}

// lookupArgs returns lookupRequestsSQL's arguments for the batch.
func lookupArgs(batch []*lookup) []any {
	at, tenants, tokens := make([]time.Time, len(batch)), make([]uuid.UUID, len(batch)), make([]uuid.UUID, len(batch))
	for i, l := range batch {
		at[i], tenants[i], tokens[i] = l.ev.OccurredAt, l.ev.TenantID, l.ev.TokenID
	}
	return []any{at, tenants, tokens}
}

// lookupTenants returns the tenant of each lookup of batch.
func lookupTenants(batch []*lookup) []uuid.UUID {
	return tenantsOf(batch, func(l *lookup) uuid.UUID { return l.ev.TenantID })
}

// scanLookups reads the rows of a batch statement into the lookups they
// answer (by ord, 1-based), and returns the rows' error once they are all
// read (a failed commit too). With flag, each row holds a bool after ord,
// handed to flag with the row before the lookup gets it.
func scanLookups(rows pgx.Rows, batch []*lookup, flag func(row *tokenRow, v bool)) error {
	defer rows.Close()
	for rows.Next() {
		var ord int64
		var v bool
		lead := []any{&ord}
		if flag != nil {
			lead = append(lead, &v)
		}
		row, err := scanToken(rows, lead...)
		if err != nil {
			return err
		}
		if ord < 1 || ord > int64(len(batch)) {
			return errors.New("vault: batch answered an unknown request")
		}
		if flag != nil {
			flag(&row, v)
		}
		l := batch[ord-1]
		l.found, l.row = true, row
	}
	rows.Close()
	return rows.Err()
}

// keepFirstCVC is the flag of revealTokensSQL's rows: a request that is
// not its token's first in the batch gets the row without its CVC.
func keepFirstCVC(row *tokenRow, first bool) {
	if !first {
		row.sealed.cvc, row.sealed.cvcExpiresAt = nil, nil
	}
}

// readToken returns the stored row of the lookup's token once its read's
// audit row has committed with the batch, or KindNotFound.
func (s *Service) readToken(l *lookup) (tokenRow, error) {
	if err := s.reads.do(l, s.readTokens); err != nil {
		return tokenRow{}, err
	}
	if !l.found {
		return tokenRow{}, dbError(pgx.ErrNoRows, "token")
	}
	return l.row, nil
}

// errRevealBatch means a reveal batch rolled back because one of its cards
// did not decrypt (that lookup's err says why).
var errRevealBatch = errors.New("vault: reveal batch rolled back")

// revealTokens runs a reveal batch in one transaction: the statement, then
// the decryption of every card found, then the commit. Anything failing
// after the statement rolls the whole batch back, CVCs included. Errors are
// returned untranslated.
func (s *Service) revealTokens(batch []*lookup) error {
	ctx, cancel := context.WithTimeout(context.Background(), lookupBatchTimeout)
	defer cancel()
	return s.inAuditedTx(ctx, writerLanes, revealTokensSQL, lookupArgs(batch), lookupTenants(batch), func(rows pgx.Rows) ([]vault.AuditEvent, error) {
		if err := scanLookups(rows, batch, keepFirstCVC); err != nil {
			return nil, err
		}
		failed := false
		var events []vault.AuditEvent
		for _, l := range batch {
			if l.found {
				events = append(events, revealAudit(l))
				l.out, l.err = s.open(l.tk, l.row)
				failed = failed || l.err != nil
			}
		}
		if failed {
			return nil, errRevealBatch
		}
		return events, nil
	})
}

// errRevealAlone tells the requests of a batch that rolled back for one
// request's sake (a card that does not decrypt, a deadlock) to reveal on
// their own, so that only the failing one fails.
var errRevealAlone = errors.New("vault: reveal alone")

// revealBatch is the write of the reveals' group commit.
func (s *Service) revealBatch(batch []*lookup) error {
	err := s.revealTokens(batch)
	if len(batch) > 1 && (errors.Is(err, errRevealBatch) || isDeadlock(err)) {
		return errRevealAlone
	}
	return err
}

// revealToken reveals the lookup's token in a batch with concurrent
// reveals, or on its own when the batch rolled back for another request's
// sake. It returns KindNotFound for a token it did not find and a domain
// error for a card that does not decrypt or a failing database.
func (s *Service) revealToken(l *lookup) (vault.Revealed, error) {
	err := s.reveals.do(l, s.revealBatch)
	if errors.Is(err, errRevealAlone) {
		l.found, l.err = false, nil
		err = s.revealTokens([]*lookup{l})
	}
	switch {
	case errors.Is(err, errRevealBatch):
		return vault.Revealed{}, l.err
	case err != nil:
		return vault.Revealed{}, dbError(err, "token")
	case !l.found:
		return vault.Revealed{}, dbError(pgx.ErrNoRows, "token")
	}
	return l.out, nil
}
