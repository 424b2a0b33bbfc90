package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// A tokenization whose business key is taken by a token holding another
// card (an account updater's new card, a changed name or metadata, a CVC
// forwarded again) reconciles that token. Concurrent reconciliations are
// written together (see groupCommit): one transaction per batch, on one
// connection, in two round trips. The first begins it, locks every token
// the batch names, in id order, and a lane of each of its tenants' audit
// chains (auditlanes.go); the vault then reconciles each
// request in arrival order against the token as the requests before it in
// the batch left it (so several updates of one token keep every replaced
// card as a version and the last one wins, as one after the other would);
// the second sends every request's writes (version, token, audit row and
// webhook event, the statements of the sequential path) and the COMMIT.
// A request the batch cannot settle so (its token vanished, a missing
// scope, a card that does not open) and every request of a batch that
// PostgreSQL refuses reconcile alone afterwards, each in its own
// transaction as before, so such a request fails alone.

// tokenUpdate is one request of an update batch and its outcome.
type tokenUpdate struct {
	a    vault.Actor
	tk   *tenantKeys
	row  tokenRow // the row the request would have inserted
	card card.Card

	out      tokenRow
	enqueued bool
	eventKey uint32 // the key that sealed its webhook event's data
	alone    bool   // to be reconciled in its own transaction
}

// tokenUpdateBatch is a group commit of reconciliations.
type tokenUpdateBatch = groupCommit[*tokenUpdate]

// errReconcileAlone stops the batched reconciliation of one request: the
// request is reconciled in its own transaction instead.
var errReconcileAlone = errors.New("vault: reconcile in its own transaction")

// lockTokensSQL locks the tokens holding the business keys $2 of the
// tenants $1, in id order, and answers their tokenColumns.
var lockTokensSQL = `
	SELECT ` + qualified("k", tokenColumns) + `
	FROM unnest($1::uuid[], $2::text[]) AS q(tenant_id, business_key)
	JOIN tokens k ON k.tenant_id = q.tenant_id AND k.business_key = q.business_key
	ORDER BY k.id
	FOR UPDATE OF k`

// updateToken reconciles the token holding row's business key with card,
// in a batch of concurrent reconciliations or, when the batch cannot
// settle it, alone. It returns the reconciled row and whether a
// token.updated event was enqueued, or reconcile's errors (errRaced when
// the token vanished).
func (s *Service) updateToken(ctx context.Context, a vault.Actor, tk *tenantKeys, row tokenRow, card card.Card) (tokenRow, bool, error) {
	u := &tokenUpdate{a: a, tk: tk, row: row, card: card}
	if err := s.updates.do(u, s.writeUpdates); err != nil {
		return tokenRow{}, false, err
	}
	return s.settleUpdate(ctx, u)
}

// settleUpdate returns u's outcome once its batch was written: the batch's
// for a request it settled, else that of reconciling it alone.
func (s *Service) settleUpdate(ctx context.Context, u *tokenUpdate) (tokenRow, bool, error) {
	if !u.alone {
		return u.out, u.enqueued, nil
	}
	var out tokenRow
	var enqueued bool
	err := s.inTx(ctx, "token", func(tx pgx.Tx) error {
		var err error
		out, enqueued, err = s.reconcile(ctx, tx, u.a, u.tk, u.row, u.card)
		return err
	})
	return out, enqueued, err
}

// writeUpdates writes a batch of reconciliations in one transaction. When
// PostgreSQL refuses it for a reason other than being unavailable, every
// request of the batch is reconciled alone.
func (s *Service) writeUpdates(batch []*tokenUpdate) error {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	err := s.updateTogether(ctx, batch)
	if err == nil {
		return nil
	}
	if !isSealingKeyViolation(err) && vault.ErrorKind(dbError(err, "token")) == vault.KindUnavailable {
		return dbError(err, "token")
	}
	for _, u := range batch {
		u.out, u.enqueued, u.alone = tokenRow{}, false, true
	}
	return nil
}

// updateTogether runs batch's transaction on one connection: lock the
// tokens and audit lanes, build every request's writes, write and commit. Errors are returned
// untranslated.
func (s *Service) updateTogether(ctx context.Context, batch []*tokenUpdate) error {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release() // a connection left inside a transaction is destroyed, never reused
	l, err := s.lockUpdated(ctx, conn, batch)
	if err == nil {
		w := s.buildUpdates(ctx, batch, l.tokens)
		err = w.send(ctx, s, conn, l)
	}
	if err != nil {
		rollback(conn)
		return err
	}
	for _, u := range batch {
		if u.enqueued {
			s.usage.add(u.out.TenantID, u.eventKey)
		}
	}
	return nil
}

// tokenKey names a token by tenant and business key.
type tokenKey struct {
	tenant      uuid.UUID
	businessKey string
}

// updateLocks is what the first round trip of an update batch locked: the
// tokens its requests name, by tenant and business key, and a lane of each
// of its tenants' audit chains, with those chains' keys.
type updateLocks struct {
	tokens map[tokenKey]tokenRow
	heads  map[uuid.UUID]*laneHead
	keys   map[uuid.UUID][]byte
}

// lockUpdated begins the batch's transaction, locks the tokens its
// requests name and a lane of each of its tenants' audit chains, in one
// round trip (a chain whose every lane is held waits for one in another).
// It returns errNoLanes (forgetting the cached chain keys) when a chain
// has no lanes any more, auditChainKey's errors, or the driver error.
func (s *Service) lockUpdated(ctx context.Context, conn *pgxpool.Conn, batch []*tokenUpdate) (updateLocks, error) {
	seen := make(map[tokenKey]bool, len(batch))
	var tenants []uuid.UUID
	var keys []string
	for _, u := range batch {
		k := tokenKey{u.a.TenantID, u.row.BusinessKey}
		if !seen[k] {
			seen[k] = true
			tenants, keys = append(tenants, k.tenant), append(keys, k.businessKey)
		}
	}
	chains, chainKeys, err := s.auditChains(ctx, tenants)
	if err != nil {
		return updateLocks{}, err
	}
	var b pgx.Batch
	b.Queue("BEGIN")
	b.Queue(lockTokensSQL, tenants, keys)
	b.Queue(lockLanesSQL, chains)
	br := conn.SendBatch(ctx, &b)
	l, err := readUpdated(br, len(keys))
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = s.awaitLanes(ctx, conn, chains, l.heads)
	}
	if errors.Is(err, errNoLanes) {
		s.forgetAuditKeys()
	}
	l.keys = chainKeys
	return l, err
}

// readUpdated reads lockUpdated's answers.
func readUpdated(br pgx.BatchResults, n int) (updateLocks, error) {
	if _, err := br.Exec(); err != nil {
		return updateLocks{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return updateLocks{}, err
	}
	locked := make(map[tokenKey]tokenRow, n)
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			rows.Close()
			return updateLocks{}, err
		}
		locked[tokenKey{r.TenantID, r.BusinessKey}] = r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return updateLocks{}, err
	}
	if rows, err = br.Query(); err != nil {
		return updateLocks{}, err
	}
	heads, err := scanLaneHeads(rows)
	return updateLocks{tokens: locked, heads: heads}, err
}

// updateWrites is what a batch writes: every statement, in order, and
// which of them enqueues which request's webhook event.
type updateWrites struct {
	p      pipeline
	events map[int]*tokenUpdate // statement index → its request
}

// buildUpdates reconciles each request of batch in order against the
// token as locked or as the requests before it left it, and returns their
// writes. A request it cannot settle is marked alone and writes nothing.
func (s *Service) buildUpdates(ctx context.Context, batch []*tokenUpdate, locked map[tokenKey]tokenRow) updateWrites {
	w := updateWrites{events: map[int]*tokenUpdate{}}
	for _, u := range batch {
		k := tokenKey{u.a.TenantID, u.row.BusinessKey}
		existing, ok := locked[k]
		if !ok {
			u.alone = true // vanished: reconcile answers errRaced
			continue
		}
		var p pipeline
		out, ev, err := s.reconcileLocked(ctx, &p, u.a, u.tk, existing, u.row, u.card, func(scope vault.Scope) error {
			if u.a.Can(scope) {
				return nil
			}
			return errReconcileAlone // Require audits the denial
		})
		if err == nil && ev != nil {
			u.eventKey, err = s.queueTokenEvent(ctx, &p, u.tk, *ev, vault.EventTokenUpdated, out)
			if err == nil {
				w.events[w.p.batch.Len()+p.batch.Len()-1] = u
			}
		}
		if err != nil {
			u.alone = true
			continue
		}
		w.p.batch.QueuedQueries = append(w.p.batch.QueuedQueries, p.batch.QueuedQueries...)
		w.p.audits = append(w.p.audits, p.audits...)
		u.out, locked[k] = out, out
	}
	return w
}

// send writes w, its audit rows chained on the lanes l locked, and
// commits, in one round trip, and records which requests enqueued a
// webhook event.
func (w *updateWrites) send(ctx context.Context, s *Service, conn *pgxpool.Conn, l updateLocks) error {
	if len(w.p.audits) > 0 {
		aw, err := chainEvents(w.p.audits, l.heads, l.keys)
		if err != nil {
			return err
		}
		aw.queue(&w.p.batch, s.clock())
	}
	w.p.batch.Queue("COMMIT")
	br := conn.SendBatch(ctx, &w.p.batch)
	tags := make([]pgconn.CommandTag, 0, w.p.batch.Len())
	var err error
	for range w.p.batch.Len() {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			break
		}
		tags = append(tags, tag)
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err == nil && tags[len(tags)-1].String() != "COMMIT" {
		err = errors.New("vault: the update batch's transaction was rolled back")
	}
	if err != nil {
		return err
	}
	for i, u := range w.events {
		u.enqueued = tags[i].RowsAffected() > 0
	}
	return nil
}

// queueTokenEvent queues, into p, ev's audit row and the token event typ
// carrying row's masked record sealed with tk's primary key (written only
// when the tenant has a webhook), as auditTokenEvent writes them. It
// returns the id of the key that sealed the event's data, or the error of
// masking or sealing.
func (s *Service) queueTokenEvent(ctx context.Context, p *pipeline, tk *tenantKeys, ev vault.AuditEvent, typ vault.EventType, row tokenRow) (uint32, error) {
	tok, err := s.masked(tk, row)
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(tok.Record())
	if err != nil {
		return 0, vault.Internal(err)
	}
	id, keyID := newEventID(), tk.sealer.PrimaryKeyID()
	ct, err := tk.sealer.Seal(data, eventDataAD(row.TenantID, id))
	if err != nil {
		return 0, vault.Internal(err)
	}
	if err := s.insertAudit(ctx, p, ev); err != nil {
		return 0, err
	}
	p.batch.Queue(enqueueEventSQL, id, row.TenantID, string(typ), nil, []byte(ct), int64(keyID))
	return keyID, nil
}

// updateBatchesInFlight is how many update batches may be written at once:
// one batch locks and builds while another waits for its commit. Two
// batches naming one token do not deadlock: each locks its tokens in id
// order, and the later one waits and reads the row the earlier one wrote.
const updateBatchesInFlight = 2
