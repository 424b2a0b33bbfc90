package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// tokenColumns are the columns every token query reads, in scanToken order.
const tokenColumns = `id, tenant_id, business_key, fingerprint, fingerprint_key_id, key_id,
	pan_ct, name_ct, cvc_ct, cvc_expires_at, iin, last_four, pan_length, scheme,
	exp_month, exp_year, metadata, created_at, updated_at`

// tokenRow is a token as stored: the masked record plus its ciphertexts.
type tokenRow struct {
	vault.Token
	fpKeyID int64
	sealed  sealedCard
	// digest is the keyed digest of the card (cardDigest), written with
	// the row; scanToken does not read it back.
	digest []byte
}

// scanToken reads a row of tokenColumns, after the leading columns lead
// when given; it returns the driver's error (pgx.ErrNoRows for none).
func scanToken(row pgx.Row, lead ...any) (tokenRow, error) {
	var r tokenRow
	var businessKey *string
	var keyID int64
	var pan, name, cvc, metadata []byte
	var scheme string
	err := row.Scan(append(lead, &r.ID, &r.TenantID, &businessKey, &r.Fingerprint, &r.fpKeyID, &keyID,
		&pan, &name, &cvc, &r.sealed.cvcExpiresAt, &r.IIN, &r.LastFour, &r.PANLength, &scheme,
		&r.ExpiryMonth, &r.ExpiryYear, &metadata, &r.CreatedAt, &r.UpdatedAt)...)
	if err != nil {
		return r, err
	}
	if businessKey != nil {
		r.BusinessKey = *businessKey
	}
	r.Scheme = card.Scheme(scheme)
	r.sealed.keyID = uint32(keyID)
	r.sealed.pan, r.sealed.name, r.sealed.cvc = pan, name, cvc
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, json.Unmarshal(metadata, &r.Metadata)
}

// masked completes the record with what needs the tenant keys (the name)
// and the clock (whether the CVC is still available).
func (s *Service) masked(tk *tenantKeys, r tokenRow) (vault.Token, error) {
	t := r.Token
	name, err := s.openString(tk, t.TenantID, t.ID, fieldName, r.sealed.name)
	if err != nil {
		return vault.Token{}, err
	}
	t.CardholderName = name
	t.CVCAvailable = s.cvcLive(r.sealed)
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	return t, nil
}

// cvcLive reports whether the row still holds a CVC within its TTL.
func (s *Service) cvcLive(sc sealedCard) bool {
	return sc.cvc != nil && sc.cvcExpiresAt != nil && s.clock().Before(*sc.cvcExpiresAt)
}

// nullString maps "" to SQL NULL.
func nullString(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

// nilIfEmpty keeps an absent ciphertext NULL in the database.
func nilIfEmpty(c crypto.Ciphertext) []byte {
	if len(c) == 0 {
		return nil
	}
	return c
}

// updateCard replaces the card data, metadata and updated_at of row r,
// and queues the expiry of its new CVC, if it has one. It returns the
// driver's error.
func updateCard(ctx context.Context, q querier, r tokenRow) error {
	args, err := cardArgs(r)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `
		WITH u AS (
			UPDATE tokens SET fingerprint = $3, fingerprint_key_id = $4, key_id = $5, pan_ct = $6,
			       name_ct = $7, cvc_ct = $8, cvc_expires_at = $9, iin = $10, last_four = $11,
			       pan_length = $12, scheme = $13, exp_month = $14, exp_year = $15, metadata = $16,
			       updated_at = $17, card_digest = $18
			WHERE id = $1 AND tenant_id = $2
			RETURNING id, cvc_ct IS NOT NULL AS has_cvc, cvc_expires_at
		)
		`+queueCVCExpiries("u WHERE has_cvc"), args...)
	return err
}

// queueCVCExpiries returns the statement that queues, for the sweeper
// (cvc.go), the expiry of each CVC in rows, a FROM clause (WHERE
// included) giving the id and cvc_expires_at of tokens just written with a
// CVC; a row rewritten with the same expiry keeps its one entry.
func queueCVCExpiries(rows string) string {
	return `INSERT INTO cvc_expiries (expires_at, token_id) SELECT cvc_expires_at, id FROM ` + rows + ` ON CONFLICT DO NOTHING`
}

// cardArgs returns what updateCard writes of r, in its order: id, tenant,
// then the card data, metadata (JSON), updated_at and card digest. It
// returns the error of encoding the metadata.
func cardArgs(r tokenRow) ([]any, error) {
	metadata, err := json.Marshal(r.Metadata)
	if err != nil {
		return nil, err
	}
	return []any{r.ID, r.TenantID, r.Fingerprint, r.fpKeyID, int64(r.sealed.keyID), []byte(r.sealed.pan),
		nilIfEmpty(r.sealed.name), nilIfEmpty(r.sealed.cvc), r.sealed.cvcExpiresAt, r.IIN, r.LastFour,
		r.PANLength, string(r.Scheme), r.ExpiryMonth, r.ExpiryYear, metadata, r.UpdatedAt, r.digest}, nil
}

// tokenWriter is where reconcileLocked writes: a transaction, one
// statement each (txWriter), or an update batch's sets (updateWrites).
type tokenWriter interface {
	// keepVersion keeps old, the card being replaced, as a version.
	keepVersion(ctx context.Context, old tokenRow) error
	// updateCard writes r's card data, metadata and updated_at.
	updateCard(ctx context.Context, r tokenRow) error
	// audit writes ev's audit row.
	audit(ctx context.Context, ev vault.AuditEvent) error
}

// txWriter writes through q, inside its transaction.
type txWriter struct {
	s *Service
	q querier
}

func (w txWriter) keepVersion(ctx context.Context, old tokenRow) error {
	return w.s.keepVersion(ctx, w.q, old)
}

func (w txWriter) updateCard(ctx context.Context, r tokenRow) error { return updateCard(ctx, w.q, r) }

func (w txWriter) audit(ctx context.Context, ev vault.AuditEvent) error {
	return w.s.insertAudit(ctx, w.q, ev)
}

// newTokenRow builds the row for a new token of card: a fresh id, the
// card's ciphertexts bound to it, and the masked attributes.
func (s *Service) newTokenRow(tk *tenantKeys, tenantID uuid.UUID, in vault.TokenizeInput, c card.Card, fp []byte, fpKey uint32) (tokenRow, error) {
	now := s.clock()
	r := tokenRow{Token: vault.Token{ID: newID(), TenantID: tenantID, BusinessKey: in.BusinessKey,
		Metadata: in.Metadata, CreatedAt: now, UpdatedAt: now}}
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	return s.withCard(tk, r, c, fp, fpKey)
}

// withCard returns r carrying card c: its masked attributes, fingerprint
// and fresh ciphertexts bound to r's id.
func (s *Service) withCard(tk *tenantKeys, r tokenRow, c card.Card, fp []byte, fpKey uint32) (tokenRow, error) {
	sealed, err := s.seal(tk, r.TenantID, r.ID, c)
	if err != nil {
		return tokenRow{}, err
	}
	if r.digest, err = tk.cardDigest(c); err != nil {
		return tokenRow{}, err
	}
	r.sealed, r.Fingerprint, r.fpKeyID = sealed, fp, int64(fpKey)
	r.IIN, r.LastFour, r.PANLength, r.Scheme = c.PAN.IIN(), c.PAN.LastFour(), c.PAN.Len(), c.PAN.Scheme()
	r.ExpiryMonth, r.ExpiryYear = c.Expiry.Month, c.Expiry.Year
	r.CardholderName = c.Name
	return r, nil
}

// errRaced means a concurrent delete removed the row a tokenization found
// taken; the tokenization starts over.
var errRaced = errors.New("token vanished between insert and select")

// Tokenize stores a card and returns its masked record and whether a new
// token was created. With a business key it is idempotent within the
// tenant: the same card returns the existing token; changed card data
// replaces the stored card under the same token id and is audited as an
// update. Concurrent first calls with one business key make exactly one
// token. A new or changed token enqueues a token.created or token.updated
// webhook event in the same transaction. It returns a KindInvalid error for
// invalid card data or attributes.
func (s *Service) Tokenize(ctx context.Context, a vault.Actor, in vault.TokenizeInput) (vault.Token, bool, error) {
	c, err := card.ParseCard(in.Card)
	if err != nil {
		return vault.Token{}, false, vault.AsError(err)
	}
	if err := checkAttributes(in.BusinessKey, in.Metadata); err != nil {
		return vault.Token{}, false, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.Token{}, false, err
	}
	fp, fpKey, err := tk.fingerprint(c.PAN)
	if err != nil {
		return vault.Token{}, false, err
	}
	row, err := s.newTokenRow(tk, a.TenantID, in, c, fp, fpKey)
	if err != nil {
		return vault.Token{}, false, err
	}
	for attempt := 1; ; attempt++ {
		tok, created, err := s.tokenizeOnce(ctx, a, tk, row, c)
		switch {
		case errors.Is(err, errRaced):
			continue
		case !isSealingKeyViolation(err):
			return tok, created, err
		case attempt == maxSealAttempts:
			return vault.Token{}, false, keysChanging(err)
		}
		// An update of the existing token was refused: tk's primary key was
		// retired meanwhile. Seal again with the current keys.
		if tk, err = s.newerKeys(a.TenantID, tk); err != nil {
			return vault.Token{}, false, err
		}
		if row, err = s.withCard(tk, row, c, fp, fpKey); err != nil {
			return vault.Token{}, false, err
		}
	}
}

// tokenizeOnce inserts row with its audit and webhook events in one
// statement (insertTokenAudited) or, when its business key is taken by
// another card, reconciles the existing token with card, with its audit
// event: in the new tokens' batch when it can (reconcileTaken), else in a
// batch of updates (updateToken).
func (s *Service) tokenizeOnce(ctx context.Context, a vault.Actor, tk *tenantKeys, row tokenRow, card card.Card) (vault.Token, bool, error) {
	tok, err := s.masked(tk, row)
	if err != nil {
		return vault.Token{}, false, err
	}
	nt, err := s.storeNewToken(a, tk, row, tok, &card)
	if err != nil {
		return vault.Token{}, false, err
	}
	if nt.inserted {
		if nt.enqueued {
			s.wakeWebhooks()
		}
		return tok, true, nil
	}
	if tok, ok, err := s.replayed(tk, nt.replay, tok); err != nil || ok {
		return tok, false, err
	}
	var out tokenRow
	var enqueued bool
	if nt.reconciled { // in the batch, with the keys its last attempt sealed with
		tk, out, enqueued = nt.update.tk, nt.update.out, nt.update.enqueued
	} else if out, enqueued, err = s.updateToken(ctx, a, tk, row, card); err != nil {
		return vault.Token{}, false, err
	}
	if enqueued {
		s.wakeWebhooks()
	}
	tok, err = s.masked(tk, out)
	return tok, false, err
}

// reconcile brings the token holding row's business key up to date with
// card and returns it, and whether a token.updated webhook event was
// enqueued.
func (s *Service) reconcile(ctx context.Context, tx pgx.Tx, a vault.Actor, tk *tenantKeys, row tokenRow, card card.Card) (tokenRow, bool, error) {
	existing, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE tenant_id = $1 AND business_key = $2 FOR UPDATE`, a.TenantID, row.BusinessKey))
	if errors.Is(err, pgx.ErrNoRows) {
		return tokenRow{}, false, errRaced
	}
	if err != nil {
		return tokenRow{}, false, err
	}
	updated, ev, err := s.reconcileLocked(ctx, txWriter{s, tx}, a, tk, existing, row, card, func(scope vault.Scope) error {
		return s.Require(ctx, a, scope)
	})
	if err != nil || ev == nil {
		return updated, false, err
	}
	enqueued, err := s.auditTokenEvent(ctx, tx, tk, *ev, vault.EventTokenUpdated, updated)
	return updated, enqueued, err
}

// reconcileLocked brings existing, the locked token holding row's business
// key, up to date with card through w (the replaced card's version, the
// token's new card, or the refreshed CVC and audit row of a repeated
// import), after require accepted the scope a changed number needs. It
// returns the token as updated and, for a changed card, its token.update
// audit event, still to be written with its webhook event (nil otherwise);
// or the first error of require, of decrypting or sealing, or of w.
func (s *Service) reconcileLocked(ctx context.Context, w tokenWriter, a vault.Actor, tk *tenantKeys, existing, row tokenRow, card card.Card, require func(vault.Scope) error) (tokenRow, *vault.AuditEvent, error) {
	changed, err := s.changes(tk, existing, row, card)
	if err != nil {
		return tokenRow{}, nil, err
	}
	if len(changed) == 0 {
		existing, err = s.refreshCVC(ctx, w, a, tk, existing, card)
		return existing, nil, err
	}
	if slices.Contains(changed, "number") {
		if err := require(vault.ScopeTokensUpdate); err != nil {
			return tokenRow{}, nil, err
		}
	}
	updated, err := s.withCard(tk, existing, card, row.Fingerprint, uint32(row.fpKeyID))
	if err != nil {
		return tokenRow{}, nil, err
	}
	updated.Metadata, updated.UpdatedAt = row.Metadata, s.clock()
	if slices.Contains(changed, "number") || slices.Contains(changed, "expiry") {
		if err := w.keepVersion(ctx, existing); err != nil {
			return tokenRow{}, nil, err
		}
	}
	if err := w.updateCard(ctx, updated); err != nil {
		return tokenRow{}, nil, err
	}
	ev := s.event(a, vault.ActionTokenUpdate, updated.ID, map[string]any{"changed": changed,
		"fingerprint_before": fingerprintText(existing.Fingerprint), "fingerprint_after": fingerprintText(updated.Fingerprint)})
	return updated, &ev, nil
}

// changes lists what differs between the stored token and the new card:
// "number", "expiry", "name", "metadata". A changed CVC alone is no change.
func (s *Service) changes(tk *tenantKeys, old, row tokenRow, card card.Card) ([]string, error) {
	var changed []string
	samePAN, err := s.samePAN(tk, old, row, card)
	if err != nil {
		return nil, err
	}
	if !samePAN {
		changed = append(changed, "number")
	}
	if old.ExpiryMonth != card.Expiry.Month || old.ExpiryYear != card.Expiry.Year {
		changed = append(changed, "expiry")
	}
	name, err := s.openString(tk, old.TenantID, old.ID, fieldName, old.sealed.name)
	if err != nil {
		return nil, err
	}
	if name != card.Name {
		changed = append(changed, "name")
	}
	if !maps.Equal(old.Metadata, row.Metadata) {
		changed = append(changed, "metadata")
	}
	return changed, nil
}

// samePAN compares by fingerprint when both were made with one key, and by
// decrypting the stored PAN otherwise.
func (s *Service) samePAN(tk *tenantKeys, old, row tokenRow, card card.Card) (bool, error) {
	if old.fpKeyID == row.fpKeyID {
		return bytes.Equal(old.Fingerprint, row.Fingerprint), nil
	}
	pan, err := s.openString(tk, old.TenantID, old.ID, fieldPAN, old.sealed.pan)
	return pan == card.PAN.Reveal(), err
}

// refreshCVC stores a newly forwarded CVC on an unchanged token (Stripe
// forwards one while it still has it) and audits the repeated import. The
// whole card is sealed again with tk's primary key, so that the row's
// key_id names the one key every field is under (a CVC sealed alone with a
// newer or older key than the row's would escape a retire's checks).
func (s *Service) refreshCVC(ctx context.Context, w tokenWriter, a vault.Actor, tk *tenantKeys, existing tokenRow, card card.Card) (tokenRow, error) {
	detail := map[string]any{"existing": true}
	if !card.CVC.IsZero() {
		refreshed, err := s.withCard(tk, existing, card, existing.Fingerprint, uint32(existing.fpKeyID))
		if err != nil {
			return tokenRow{}, err
		}
		if err := w.updateCard(ctx, refreshed); err != nil {
			return tokenRow{}, err
		}
		existing = refreshed
		detail["cvc_refreshed"] = true
	}
	return existing, w.audit(ctx, s.event(a, vault.ActionTokenCreate, existing.ID, detail))
}

// GetToken returns the masked record of the actor's tenant's token id once
// the read's audit row has committed (the token found and the row written
// in one statement and one commit with concurrent reads, see lookupBatch):
// no record is returned unaudited. An unknown id and another tenant's id
// both return the same KindNotFound error.
func (s *Service) GetToken(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.Token, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.Token{}, err
	}
	row, err := s.readToken(&lookup{ev: s.event(a, vault.ActionTokenRead, id, nil)})
	if err != nil {
		return vault.Token{}, err
	}
	return s.masked(tk, row)
}

// Detokenize returns the card behind the actor's tenant's token id and
// audits the reveal with reason (and whether the CVC was revealed). The
// CVC, if still held and within its TTL, is returned once and destroyed in
// the same transaction, which rolls back if the card cannot be decrypted;
// of concurrent reveals of one token only one receives it. It returns
// KindNotFound for an unknown or foreign id and KindInvalid for a bad
// reason.
func (s *Service) Detokenize(ctx context.Context, a vault.Actor, id uuid.UUID, reason string) (vault.Revealed, error) {
	if err := checkText(reason, vault.MaxReasonLen, "reason"); err != nil {
		return vault.Revealed{}, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.Revealed{}, err
	}
	var detail map[string]any
	if reason != "" {
		detail = map[string]any{"reason": reason}
	}
	out, err := s.revealToken(&lookup{ev: s.event(a, vault.ActionTokenReveal, id, detail), tk: tk})
	out.Token.CVCAvailable = false
	return out, err
}

// open decrypts every field of row into a Revealed card.
func (s *Service) open(tk *tenantKeys, row tokenRow) (vault.Revealed, error) {
	tok, err := s.masked(tk, row)
	if err != nil {
		return vault.Revealed{}, err
	}
	digits, err := s.openString(tk, row.TenantID, row.ID, fieldPAN, row.sealed.pan)
	if err != nil {
		return vault.Revealed{}, err
	}
	pan, err := card.ParsePAN(digits)
	if err != nil {
		return vault.Revealed{}, vault.Internal(errors.New("stored PAN does not parse"))
	}
	c := card.Card{PAN: pan, Expiry: card.Expiry{Month: row.ExpiryMonth, Year: row.ExpiryYear}, Name: tok.CardholderName}
	if s.cvcLive(row.sealed) {
		cvc, err := s.openString(tk, row.TenantID, row.ID, fieldCVC, row.sealed.cvc)
		if err != nil {
			return vault.Revealed{}, err
		}
		if c.CVC, err = card.ParseCVC(cvc); err != nil {
			return vault.Revealed{}, vault.Internal(errors.New("stored CVC does not parse"))
		}
	}
	return vault.Revealed{Token: tok, Card: c}, nil
}

// DeleteToken deletes the actor's tenant's token id with its ciphertexts and
// audits it, with a token.deleted webhook event carrying its last masked
// record in the same transaction; the audit trail stays. It returns
// KindNotFound for an unknown or foreign id.
func (s *Service) DeleteToken(ctx context.Context, a vault.Actor, id uuid.UUID) error {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return err
	}
	var enqueued bool
	err = s.inTx(ctx, "token", func(tx pgx.Tx) error {
		row, err := scanToken(tx.QueryRow(ctx, `DELETE FROM tokens WHERE id = $1 AND tenant_id = $2 RETURNING `+tokenColumns,
			id, a.TenantID))
		if err != nil {
			return err
		}
		enqueued, err = s.auditTokenEvent(ctx, tx, tk, s.event(a, vault.ActionTokenDelete, id, nil), vault.EventTokenDeleted, row)
		return err
	})
	if err == nil && enqueued {
		s.wakeWebhooks()
	}
	return err
}

// ListTokens returns the actor's tenant's tokens newest first and audits the
// listing. It returns KindBadRequest for a bad limit, and InvalidCursor for
// a starting_after id that names none of the tenant's tokens.
func (s *Service) ListTokens(ctx context.Context, a vault.Actor, p vault.ListTokensParams) (vault.TokenPage, error) {
	if err := checkLimit(p.Limit); err != nil {
		return vault.TokenPage{}, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.TokenPage{}, err
	}
	return s.listTokens(ctx, a, tk, p, vault.ActionTokenList)
}

// listTokens is a token listing with the tenant's keys tk, audited as
// action.
func (s *Service) listTokens(ctx context.Context, a vault.Actor, tk *tenantKeys, p vault.ListTokensParams, action vault.Action) (vault.TokenPage, error) {
	after, err := s.cursor(ctx, a.TenantID, p.StartingAfter)
	if err != nil {
		return vault.TokenPage{}, err
	}
	var page vault.TokenPage
	err = s.inTx(ctx, "token", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+tokenColumns+` FROM tokens
			WHERE tenant_id = $1 AND ($2::text IS NULL OR business_key = $2)
			  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
			  AND ($6::bytea IS NULL OR fingerprint = $6 OR previous_fingerprint = $6)
			ORDER BY created_at DESC, id DESC LIMIT $5`,
			a.TenantID, nullString(p.BusinessKey), after.at, after.id, p.Limit+1, p.Fingerprint)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tokenRow, error) { return scanToken(r) })
		if err != nil {
			return err
		}
		page, err = s.tokenPage(ctx, tx, a, tk, found, p.Limit, action)
		return err
	})
	return page, err
}

// tokenPage masks the rows found for a listing of limit tokens and audits
// it as action with q, the listing's transaction.
func (s *Service) tokenPage(ctx context.Context, q querier, a vault.Actor, tk *tenantKeys, found []tokenRow, limit int, action vault.Action) (vault.TokenPage, error) {
	var page vault.TokenPage
	if len(found) > limit {
		found, page.HasMore = found[:limit], true
	}
	page.Tokens = make([]vault.Token, 0, len(found))
	for _, r := range found {
		t, err := s.masked(tk, r)
		if err != nil {
			return vault.TokenPage{}, err
		}
		page.Tokens = append(page.Tokens, t)
	}
	ev := s.event(a, action, uuid.Nil, map[string]any{"count": len(page.Tokens)})
	if err := s.insertAudit(ctx, q, ev); err != nil {
		return vault.TokenPage{}, err
	}
	return page, nil
}

type listCursor struct {
	at *time.Time
	id uuid.UUID
}

// cursor resolves a starting_after id to its position in the listing order.
func (s *Service) cursor(ctx context.Context, tenantID, id uuid.UUID) (listCursor, error) {
	if id == uuid.Nil {
		return listCursor{}, nil
	}
	var at time.Time
	err := s.db.QueryRow(ctx, `SELECT created_at FROM tokens WHERE id = $1 AND tenant_id = $2`, id, tenantID).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return listCursor{}, vault.InvalidCursor()
	}
	if err != nil {
		return listCursor{}, dbError(err, "token")
	}
	return listCursor{at: &at, id: id}, nil
}
