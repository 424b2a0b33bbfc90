package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
)

// Before a forward sends anything, its audit row, the CVC's consumption
// and its pending record are committed. The pre-send transactions of
// concurrent forwards are group-committed (see groupCommit): one
// transaction frees expired Idempotency-Keys, reads the records holding
// the batch's keys, reads its tokens, locking those that still hold a CVC
// (in id order, so that concurrent transactions cannot deadlock), and
// reads its tenants' destinations, in one round trip; the vault builds
// each forward; then one statement writes every CVC consumption, audit row
// and pending record and the commit follows in the same round trip.
// Nothing is sent before that commit has returned. Each request keeps its own outcome: a bad
// parameter, an unknown payment method or a URL off the allow-list fails
// only that request, and of the requests for one token that ask for
// card_cvc only the first gets it. When PostgreSQL refuses the batch (a
// row it will not take, a key retired meanwhile, a deadlock) nothing was
// written, and each request prepares alone.

// forwardBatchTimeout bounds one pre-send batch, which runs on behalf of
// every request waiting for it.
const forwardBatchTimeout = 10 * time.Second

// forwardPrepBatch is the group commit of forwards' pre-send transactions.
type forwardPrepBatch = groupCommit[*forwardPrep]

// forwardPrep is one forward of a pre-send batch: what was asked and, once
// the batch is done, what to send (p) or why not (err).
type forwardPrep struct {
	a    vault.Actor
	tk   *tenantKeys
	in   vault.ForwardInput
	idem forwardIdem

	row     tokenRow // the token, locked; found says whether there is one
	found   bool
	earlier *forwardRow // the live record holding the request's Idempotency-Key
	w       *forwardWrite
	p       *preparedForward
	err     error
}

// errForwardAlone tells the requests of a batch PostgreSQL refused to
// prepare on their own: nothing of the batch was written.
var errForwardAlone = errors.New("vault: prepare the forward alone")

// prepareForward builds the forward and commits its audit row, the CVC's
// consumption and its pending record with concurrent forwards, or returns
// the record of an earlier request with the same Idempotency-Key marked
// for replay. It starts over with the tenant's current keys when the one
// that sealed the record was retired meanwhile. It returns
// errURLNotAllowed, errNoPaymentMethod, a KindBadRequest error for a body
// the destination's fields do not fit, a KindIdempotency error for a key
// used with another request, or a domain error when the database fails.
func (s *Service) prepareForward(ctx context.Context, a vault.Actor, tk *tenantKeys, in vault.ForwardInput, idem forwardIdem) (*preparedForward, error) {
	for attempt := 1; ; attempt++ {
		f := &forwardPrep{a: a, tk: tk, in: in, idem: idem}
		p, err := s.settlePrep(ctx, f, s.forwardPreps.do(f, s.prepareForwardBatch))
		if !isSealingKeyViolation(err) || attempt == maxSealAttempts {
			return p, dbError(err, "payment method")
		}
		if tk, err = s.newerKeys(a.TenantID, tk); err != nil {
			return nil, err
		}
	}
}

// settlePrep returns f's outcome once its batch ended with err: f's own,
// or, when PostgreSQL refused the batch, that of preparing f alone. A
// database error is returned untranslated.
func (s *Service) settlePrep(ctx context.Context, f *forwardPrep, err error) (*preparedForward, error) {
	if errors.Is(err, errForwardAlone) {
		*f = forwardPrep{a: f.a, tk: f.tk, in: f.in, idem: f.idem}
		err = s.prepareForwards(ctx, []*forwardPrep{f})
	}
	if err != nil {
		return nil, err
	}
	return f.p, f.err
}

// prepareForwardBatch is the write of the pre-send group commit. A batch
// of several PostgreSQL refused (a *pgconn.PgError: nothing was committed)
// answers errForwardAlone; any other failure, such as a lost connection,
// whose commit may or may not have happened, is returned as it is.
func (s *Service) prepareForwardBatch(batch []*forwardPrep) error {
	ctx, cancel := context.WithTimeout(context.Background(), forwardBatchTimeout)
	defer cancel()
	err := s.prepareForwards(ctx, batch)
	var pgErr *pgconn.PgError
	if len(batch) > 1 && (errors.As(err, &pgErr) || errors.Is(err, errForwardRolledBack)) {
		return errForwardAlone
	}
	return err
}

// errForwardRolledBack means a pre-send transaction's COMMIT answered
// ROLLBACK.
var errForwardRolledBack = errors.New("vault: the forward's transaction was rolled back")

// prepareForwards runs the pre-send transaction of batch on one
// connection: lock and read (one round trip), build every forward, then
// write and commit (one round trip). Errors are returned untranslated.
func (s *Service) prepareForwards(ctx context.Context, batch []*forwardPrep) error {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release() // a connection left inside a transaction is destroyed, never reused
	dests, err := lockForwards(ctx, conn, batch, s.clock().Add(-vault.IdempotencyTTL))
	if err == nil {
		s.buildForwards(batch, dests)
		err = s.writeForwards(ctx, conn, batch)
	}
	if err != nil {
		rollback(conn)
	}
	return err
}

// lockForwardsSQL finds the token each request names ($1 tenant, $2 the
// payment method as a token id or NULL, $3 as a business key): by id when
// it is one of the tenant's, else by business key. It answers the
// request's ord and the token columns.
//
// As a reveal does, it locks only the tokens that still hold a CVC, and
// takes the CVC from the row as locked (cvcLockedSQL): a token without one
// (a merchant's repeated charges) is read and neither locked nor written.
var lockForwardsSQL = `
	WITH req AS (
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS r(tenant_id, token_id, pm, ord)
	), pick AS (
		SELECT r.ord, coalesce(
			(SELECT k.id FROM tokens k WHERE k.tenant_id = r.tenant_id AND k.id = r.token_id),
			(SELECT k.id FROM tokens k WHERE k.tenant_id = r.tenant_id AND k.business_key = r.pm)) AS id
		FROM req r
	), ` + cvcLockedSQL(`id IN (SELECT id FROM pick)`) + `
	SELECT p.ord, ` + qualified("t", tokenColumns) + ` FROM pick p JOIN t ON t.id = p.id`

// batchDestinationsSQL reads the live destinations of the tenants $1,
// oldest first.
const batchDestinationsSQL = `SELECT ` + destinationColumns + ` FROM forwarding_destinations
	WHERE tenant_id = ANY($1) AND deleted_at IS NULL ORDER BY created_at, id`

// forgetIdempotencySQL frees the keys ($1 tenants, $2 keys) of records
// created at or before $3.
const forgetIdempotencySQL = `UPDATE forwarding_requests SET idempotency_key = NULL, idempotency_fp = NULL
	WHERE (tenant_id, idempotency_key) IN (SELECT * FROM unnest($1::uuid[], $2::bytea[])) AND created_at <= $3`

// earlierForwardsSQL reads the records holding the keys ($1 tenants, $2
// keys), each after its key.
const earlierForwardsSQL = `SELECT idempotency_key, ` + forwardColumns + ` FROM forwarding_requests
	WHERE (tenant_id, idempotency_key) IN (SELECT * FROM unnest($1::uuid[], $2::bytea[]))`

// lockForwards begins the transaction, frees the batch's Idempotency-Keys
// held by records created at or before keysBefore, reads the records
// holding the others, reads the batch's tokens (locking those that hold a
// CVC) and its tenants' destinations, in one round trip. It fills each
// request's row, found and earlier, and returns the destinations by
// tenant.
func lockForwards(ctx context.Context, conn *pgxpool.Conn, batch []*forwardPrep, keysBefore time.Time) (map[uuid.UUID][]destinationRow, error) {
	var b pgx.Batch
	b.Queue("BEGIN")
	keyTenants, keys := batchIdempotencyKeys(batch)
	if len(keys) > 0 {
		b.Queue(forgetIdempotencySQL, keyTenants, keys, keysBefore)
		b.Queue(earlierForwardsSQL, keyTenants, keys)
	}
	// Generic plans from here on (genericplans.go): the Idempotency-Key
	// statements above probe forwarding_requests as the outcome update
	// does, whose generic plan was measured slower, and keep custom ones.
	b.Queue(genericPlansSQL)
	tenants, ids, pms := make([]uuid.UUID, len(batch)), make([]*uuid.UUID, len(batch)), make([]string, len(batch))
	for i, f := range batch {
		tenants[i], pms[i] = f.a.TenantID, f.in.PaymentMethod
		if u, err := uuid.Parse(f.in.PaymentMethod); err == nil {
			ids[i] = &u
		}
	}
	b.Queue(lockForwardsSQL, tenants, ids, pms)
	b.Queue(batchDestinationsSQL, distinct(tenants))
	br := conn.SendBatch(ctx, &b)
	dests, err := readLocked(br, batch, len(keys) > 0)
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	return dests, err
}

// readLocked reads lockForwards's answers in the order they were queued.
func readLocked(br pgx.BatchResults, batch []*forwardPrep, withKeys bool) (map[uuid.UUID][]destinationRow, error) {
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	if withKeys {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
		if err := readEarlier(br, batch); err != nil {
			return nil, err
		}
	}
	if _, err := br.Exec(); err != nil { // genericPlansSQL
		return nil, err
	}
	if err := readLockedTokens(br, batch); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (destinationRow, error) { return scanDestination(r) })
	byTenant := map[uuid.UUID][]destinationRow{}
	for _, d := range list {
		byTenant[d.TenantID] = append(byTenant[d.TenantID], d)
	}
	return byTenant, err
}

// readEarlier gives each request with an Idempotency-Key the record that
// holds it, if any.
func readEarlier(br pgx.BatchResults, batch []*forwardPrep) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (forwardRow, error) {
		var key []byte
		row, err := scanForward(r, &key)
		row.idemKey = key
		return row, err
	})
	if err != nil {
		return err
	}
	for _, f := range batch {
		for i := range found {
			if f.idem.key != nil && found[i].TenantID == f.a.TenantID && bytes.Equal(found[i].idemKey, f.idem.key) {
				f.earlier = &found[i]
			}
		}
	}
	return nil
}

// readLockedTokens gives each request the token it names, if it found one.
func readLockedTokens(br pgx.BatchResults, batch []*forwardPrep) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	return scanTokensByOrd(rows, len(batch), func(i int, row tokenRow) { batch[i].row, batch[i].found = row, true })
}

// scanTokensByOrd reads rows of ord (1-based, the request of a batch of n)
// and token columns, giving each to found with its request's index, and
// returns the rows' error once they are all read; an ord outside the batch
// is an error.
func scanTokensByOrd(rows pgx.Rows, n int, found func(i int, row tokenRow)) error {
	defer rows.Close()
	for rows.Next() {
		var ord int64
		row, err := scanToken(rows, &ord)
		if err != nil {
			return err
		}
		if ord < 1 || ord > int64(n) {
			return errors.New("vault: batch answered an unknown request")
		}
		found(int(ord-1), row)
	}
	rows.Close()
	return rows.Err()
}

// batchIdempotencyKeys returns the tenants and keys of the batch's
// requests that came with an Idempotency-Key.
func batchIdempotencyKeys(batch []*forwardPrep) ([]uuid.UUID, [][]byte) {
	var tenants []uuid.UUID
	var keys [][]byte
	for _, f := range batch {
		if f.idem.key != nil {
			tenants, keys = append(tenants, f.a.TenantID), append(keys, f.idem.key)
		}
	}
	return tenants, keys
}

// distinct returns ids without repeats.
func distinct(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(out)
}

// buildForwards decides each request of the batch: a replay of an earlier
// record, a refusal, or a forward built and ready to write. Of the
// requests for one token that ask for card_cvc, only the first built gets
// it; the others send the CVC blank, as a later forward would.
func (s *Service) buildForwards(batch []*forwardPrep, dests map[uuid.UUID][]destinationRow) {
	cvcTaken := map[uuid.UUID]bool{}
	for i, f := range batch {
		if f.settleByKey(batch[:i], s) {
			continue
		}
		if !f.found {
			f.err = errNoPaymentMethod
			continue
		}
		if cvcTaken[f.row.ID] {
			f.row.sealed.cvc, f.row.sealed.cvcExpiresAt = nil, nil
		}
		f.p, f.w, f.err = s.buildBatched(f, dests[f.a.TenantID])
		if f.err == nil && f.w.consume {
			cvcTaken[f.row.ID] = true
		}
	}
}

// settleByKey decides a request whose Idempotency-Key an earlier record
// holds, or an earlier request of the batch (before) came with: it is a
// replay, or an idempotency error when the key came with another request.
// It reports whether the request is decided.
func (f *forwardPrep) settleByKey(before []*forwardPrep, s *Service) bool {
	if f.idem.key == nil {
		return false
	}
	if f.earlier != nil {
		f.p, f.err = s.replayOf(f.tk, *f.earlier, f.idem)
		return true
	}
	for _, o := range before {
		if o.idem.key != nil && o.a.TenantID == f.a.TenantID && bytes.Equal(o.idem.key, f.idem.key) {
			f.p, f.err = o.replayInBatch(f.idem)
			return true
		}
	}
	return false
}

// replayInBatch is what a request with the same Idempotency-Key as o, an
// earlier request of the same batch, is answered: o's pending record (its
// outcome not known yet, so nothing is sent again), o's error, or an
// idempotency error when the key came with another request.
func (o *forwardPrep) replayInBatch(idem forwardIdem) (*preparedForward, error) {
	switch {
	case !bytes.Equal(o.idem.fp, idem.fp):
		return nil, errIdempotencyMismatch()
	case o.err != nil:
		return nil, o.err
	case o.p.replay:
		return o.p, nil
	}
	rec := o.p.rec
	rec.Replayed = true
	return &preparedForward{rec: rec, replay: true}, nil
}

// buildBatched matches the request's URL against its tenant's
// destinations and builds the forward and what committing it writes.
func (s *Service) buildBatched(f *forwardPrep, dests []destinationRow) (*preparedForward, *forwardWrite, error) {
	drow, ok := firstMatch(dests, f.in.URL)
	if !ok {
		return nil, nil, errURLNotAllowed
	}
	p, err := s.buildForward(f.tk, f.row, drow, f.in)
	if err != nil {
		return nil, nil, err
	}
	w, err := s.forwardWriteOf(f.a, f.tk, f.row, p, f.in, f.idem)
	if err != nil {
		return nil, nil, err
	}
	p.requestCT, p.keyID = w.ct, w.keyID
	return p, w, nil
}

// firstMatch returns the first of dests whose URL pattern rawURL matches.
func firstMatch(dests []destinationRow, rawURL string) (destinationRow, bool) {
	for _, d := range dests {
		if _, ok := forwarding.Match([]forwarding.Destination{{URL: d.URL}}, rawURL); ok {
			return d, true
		}
	}
	return destinationRow{}, false
}

// writeForwardsSQL writes a batch's CVC consumptions ($1 token ids) and
// pending records ($2–$14), in one statement; the audit rows follow in the
// same round trip (writeForwards).
const writeForwardsSQL = `
	WITH cvc AS (
		UPDATE tokens SET cvc_ct = NULL WHERE id = ANY($1::uuid[]) AND cvc_ct IS NOT NULL
	)
	INSERT INTO forwarding_requests (id, tenant_id, token_id, payment_method, destination_id, url, replacements,
	                                 metadata, status, request_ct, key_id, idempotency_key, idempotency_fp, created_at)
	SELECT r.id, r.tenant_id, r.token_id, r.pm, r.dest, r.url, ARRAY(SELECT jsonb_array_elements_text(r.repl)),
	       r.metadata, 'pending', r.ct, r.key_id, r.ikey, r.ifp, r.created_at
	FROM unnest($2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
	            $9::jsonb[], $10::bytea[], $11::bigint[], $12::bytea[], $13::bytea[], $14::timestamptz[])
	AS r(id, tenant_id, token_id, pm, dest, url, repl, metadata, ct, key_id, ikey, ifp, created_at)`

// writeForwards writes what the batch's built forwards write and commits,
// in one round trip; only that commit makes them sendable.
func (s *Service) writeForwards(ctx context.Context, conn *pgxpool.Conn, batch []*forwardPrep) error {
	var b pgx.Batch
	args, events, err := forwardWriteArgs(batch)
	if err != nil {
		return err
	}
	if args != nil {
		w, err := s.prepareAudit(ctx, conn, writerLanes, events)
		if err != nil {
			return err
		}
		b.Queue(writeForwardsSQL, args...)
		w.queue(&b, s.clock())
	}
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, &b)
	var tag pgconn.CommandTag
	for range b.Len() {
		if tag, err = br.Exec(); err != nil {
			break
		}
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err == nil && tag.String() != "COMMIT" {
		err = errForwardRolledBack
	}
	return err
}

// forwardWriteArgs returns writeForwardsSQL's arguments for the built
// forwards of batch, and their audit events; nil when there is none.
func forwardWriteArgs(batch []*forwardPrep) ([]any, []vault.AuditEvent, error) {
	cvc := []uuid.UUID{}
	var events []vault.AuditEvent
	var cols recordColumns
	for _, f := range batch {
		if f.err != nil || f.w == nil {
			continue
		}
		if f.w.consume {
			cvc = append(cvc, f.row.ID)
		}
		events = append(events, f.w.ev)
		if err := cols.add(f.w); err != nil {
			return nil, nil, err
		}
	}
	if len(events) == 0 {
		return nil, nil, nil
	}
	return append([]any{cvc}, cols.args()...), events, nil
}

// recordColumns are the pending records of a batch as writeForwardsSQL's
// arrays $2–$14.
type recordColumns struct {
	ids, pms, dests, urls            []string
	tenants, tokens                  []uuid.UUID
	repl, metadata, cts, ikeys, ifps [][]byte
	keyIDs                           []int64
	created                          []time.Time
}

// add appends w's record.
func (c *recordColumns) add(w *forwardWrite) error {
	repl, err := json.Marshal(w.rec.Replacements)
	if err != nil {
		return vault.Internal(err)
	}
	r := w.rec
	c.ids, c.tenants, c.tokens, c.pms = append(c.ids, r.ID), append(c.tenants, r.TenantID), append(c.tokens, r.TokenID), append(c.pms, r.PaymentMethod)
	c.dests, c.urls, c.repl, c.metadata = append(c.dests, r.DestinationID), append(c.urls, r.URL), append(c.repl, repl), append(c.metadata, w.metadata)
	c.cts, c.keyIDs, c.ikeys, c.ifps = append(c.cts, w.ct), append(c.keyIDs, w.keyID), append(c.ikeys, w.idem.key), append(c.ifps, w.idem.fp)
	c.created = append(c.created, r.CreatedAt)
	return nil
}

// args returns the columns in writeForwardsSQL order.
func (c *recordColumns) args() []any {
	return []any{c.ids, c.tenants, c.tokens, c.pms, c.dests, c.urls, c.repl, c.metadata, c.cts, c.keyIDs, c.ikeys, c.ifps, c.created}
}
