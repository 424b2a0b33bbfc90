package postgres

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// A tokenization whose business key is taken by a token holding another
// card (an account updater's new card, a changed name or metadata, a CVC
// forwarded again) reconciles that token: most in the new tokens' batch
// that found the key taken, whose statement locked the token
// (reconcileTaken, token_batch.go), with the same buildUpdates and
// updateSetSQL as below; the rest (a request that batch could not settle,
// a key an earlier row of the batch took) in a batch of updates.
// Concurrent reconciliations are
// written together (see groupCommit): one transaction per batch, on one
// connection, in two round trips. The first begins it, locks every token
// the batch names, in id order, and a lane of each of its tenants' audit
// chains (auditlanes.go); the vault then reconciles each request in
// arrival order against the token as the requests before it in the batch
// left it (so several updates of one token keep every replaced card as a
// version and the last one wins, as one after the other would); the second
// sends the batch's writes as sets (versions, tokens and webhook events in
// one statement, audit rows in another, token_update_set.go) and the
// COMMIT.
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
		err = w.send(ctx, conn, l, s.clock())
	}
	if err != nil {
		rollback(conn)
		return err
	}
	s.countUpdateEvents(batch)
	return nil
}

// countUpdateEvents counts the token.updated events the committed updates
// of batch enqueued, on the keys that sealed them.
func (s *Service) countUpdateEvents(batch []*tokenUpdate) {
	for _, u := range batch {
		if u.enqueued {
			s.usage.add(u.out.TenantID, u.eventKey)
		}
	}
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
	queueBeginGeneric(&b)
	b.Queue(lockTokensSQL, tenants, keys)
	lanes, args := s.lockLanesQuery(writerLanes, chains)
	b.Queue(lanes, args...)
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
	if err := readBeginGeneric(br); err != nil {
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

// updateBatchesInFlight is how many update batches may be written at once:
// one batch locks and builds while another waits for its commit. Two
// batches naming one token do not deadlock: each locks its tokens in id
// order, and the later one waits and reads the row the earlier one wrote.
const updateBatchesInFlight = 2
