package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// This file holds the hot path of tokenize written as one statement
// (data-modifying CTEs), so that a request costs one round trip to
// PostgreSQL instead of four (new tokens of concurrent requests also share
// one statement, see token_batch.go; reads and reveals, token_lookup.go).
// Durability is unchanged: synchronous_commit stays on, and the caller answers only after
// PostgreSQL has reported the commit (ReadyForQuery follows the commit and
// its WAL flush; pgx reads up to it before returning).

// auditInsertColumns are the audit_events columns of an event (auditArgs
// order); insertAuditRowsSQL writes them and the chain columns.
const auditInsertColumns = `occurred_at, tenant_id, api_key_id, action, token_id, request_id, client_addr, outcome, detail`

// newToken is a new token row ready to be written with its audit event and
// its sealed webhook event, and, once written, what happened to it.
type newToken struct {
	tenantID    uuid.UUID
	businessKey string
	args        []any // the token row, its audit event, its sealed event data and key id (newTokenArgs)
	ev          vault.AuditEvent
	eventID     string
	keyID       uint32
	digest      []byte // the card digest ($33)
	// replay looks, in the same transaction, for the token holding the
	// business key with this card (nil without a business key).
	replay *replay

	// update, when set, reconciles in the batch the token that holds the
	// business key with another card (reconcileTaken).
	update *tokenUpdate

	inserted, enqueued bool
	locked             bool  // the statement locked the token holding its business key with another card
	reconciled         bool  // update settled in the batch: update.out is the token as written
	err                error // this token's own error when its batch fell back to one by one
	// release is closed when the batch lets the request go before its
	// commit (see releaseTaken); the batch no longer touches it then.
	release chan struct{}
}

// released answers nt's release (earlyReleaser).
func (nt *newToken) released() <-chan struct{} { return nt.release }

// newTokenArgs indexes newToken.args.
const (
	newTokenColumns = 19 // the token row, tokenColumns order
	newTokenAudit   = 9  // then the audit event, auditArgs order
)

// prepareNewToken seals the webhook event data (tok, row's masked record)
// and lays out everything insertTokensSQL writes for row.
func (s *Service) prepareNewToken(a vault.Actor, tk *tenantKeys, row tokenRow, tok vault.Token) (*newToken, error) {
	metadata, err := json.Marshal(row.Metadata)
	if err != nil {
		return nil, vault.Internal(err)
	}
	ev := s.event(a, vault.ActionTokenCreate, row.ID, nil)
	audit, err := auditArgs(ev)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(tok.Record())
	if err != nil {
		return nil, vault.Internal(err)
	}
	nt := &newToken{tenantID: row.TenantID, businessKey: row.BusinessKey, ev: ev, eventID: newEventID(), keyID: tk.sealer.PrimaryKeyID(), digest: row.digest,
		release: make(chan struct{})}
	sealedData, err := tk.sealer.Seal(data, eventDataAD(row.TenantID, nt.eventID))
	if err != nil {
		return nil, vault.Internal(err)
	}
	nt.args = append([]any{row.ID, row.TenantID, nullString(row.BusinessKey), row.Fingerprint, row.fpKeyID, int64(row.sealed.keyID),
		[]byte(row.sealed.pan), nilIfEmpty(row.sealed.name), nilIfEmpty(row.sealed.cvc), row.sealed.cvcExpiresAt,
		row.IIN, row.LastFour, int16(row.PANLength), string(row.Scheme), int16(row.ExpiryMonth), int16(row.ExpiryYear),
		metadata, row.CreatedAt, row.UpdatedAt}, audit...)
	nt.args = append(nt.args, []byte(sealedData), int64(nt.keyID))
	if row.BusinessKey != "" && row.digest != nil {
		nt.replay = &replay{ev: s.event(a, vault.ActionTokenCreate, uuid.Nil, map[string]any{"existing": true}),
			businessKey: row.BusinessKey, digest: row.digest, metadata: metadata, hasCVC: row.sealed.cvc != nil}
	}
	return nt, nil
}

// insertTokenAudited stores a new token with its token.create audit event
// and (when the tenant has a webhook) its token.created event, committed
// together with the new tokens of concurrent requests (newTokenBatch). tok
// is row's masked record. It reports whether the row was inserted (false:
// the business key is taken and nothing was written for it) and whether an
// event was enqueued. When the database refuses the row because the key
// that sealed it was retired meanwhile (tk was loaded before the rotation),
// it seals the row again with the tenant's current keys and retries; after
// maxSealAttempts it returns a KindUnavailable error.
func (s *Service) insertTokenAudited(a vault.Actor, tk *tenantKeys, row tokenRow, tok vault.Token) (bool, bool, error) {
	nt, err := s.storeNewToken(a, tk, row, tok, nil)
	if err != nil {
		return false, false, err
	}
	return nt.inserted, nt.enqueued, nil
}

// storeNewToken is insertTokenAudited answering the written newToken: a
// row whose business key is taken was also looked for as a replay of the
// card that key holds (nt.replay.found, with its audit row committed)
// and, with c (the row's card; nil for none), reconciled when that key
// holds another card and the batch could (nt.reconciled, the token
// written in nt.update.out).
func (s *Service) storeNewToken(a vault.Actor, tk *tenantKeys, row tokenRow, tok vault.Token, c *card.Card) (*newToken, error) {
	for attempt := 1; ; attempt++ {
		nt, err := s.prepareNewToken(a, tk, row, tok)
		if err != nil {
			return nil, err
		}
		if c != nil && row.BusinessKey != "" {
			nt.update = &tokenUpdate{a: a, tk: tk, row: row, card: *c}
		}
		if err = s.newTokens.do(nt, s.writeNewTokens); err == nil {
			err = nt.err
		}
		if err == nil {
			if nt.enqueued {
				s.usage.add(nt.tenantID, nt.keyID)
			}
			return nt, nil
		}
		if !isSealingKeyViolation(err) {
			return nil, err
		}
		if attempt == maxSealAttempts {
			return nil, keysChanging(err)
		}
		if tk, row, err = s.resealNewToken(tk, row); err != nil {
			return nil, err
		}
	}
}

// maxSealAttempts bounds how often one new row is sealed again because its
// key was retired meanwhile: each attempt reloads the tenant's keys, so a
// second refusal needs a second retire within one request.
const maxSealAttempts = 3

// keysChanging is the error of a write refused maxSealAttempts times because
// the tenant's keys keep being retired under it.
func keysChanging(err error) *vault.Error {
	return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable,
		Message: "the tenant's data keys are being rotated; retry later", Err: err}
}

// resealNewToken returns the tenant's current keys and row sealed again with
// their primary key (opened with stale, the keys that sealed it). It returns
// a domain error when the keys cannot be loaded.
func (s *Service) resealNewToken(stale *tenantKeys, row tokenRow) (*tenantKeys, tokenRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyLoadTimeout)
	defer cancel()
	tk, err := s.keys.renew(ctx, row.TenantID, stale)
	if err != nil {
		return nil, row, err
	}
	row.sealed, err = s.resealCard(stale, tk, row.TenantID, row.ID, row.sealed)
	return tk, row, err
}

// insertOneToken writes nt alone, as a batch of one.
func (s *Service) insertOneToken(ctx context.Context, nt *newToken) error {
	return s.insertTokens(ctx, []*newToken{nt}, false)
}

// rollback ends conn's transaction, if any, best effort: a connection still
// in one is destroyed on release anyway.
func rollback(conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' || conn.Conn().IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, "ROLLBACK")
}
