package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
)

// A repeated import of the card a business key already holds (Stripe
// forwarding a payment method again) is answered by one indexed read and
// one audit row, in the new tokens' batch statement (insertTokensSQL) or,
// for a request that wrote alone, in a batch of replays (see groupCommit): the
// stored row matches when its card digest (cardDigest, keyed, so the card
// is compared without decrypting) and metadata are the request's and, when
// the request carries a CVC, the stored CVC is still held within its TTL.
// Nothing is rewritten, so such a replay does not extend the CVC's TTL. Any
// other case (a changed card, a CVC to store again, a token written before
// digests were kept) is reconciled in a batch of updates (token_update.go).

// replayBatchesInFlight is how many replay batches may be written at once,
// as for reads (readBatchesInFlight): a batch is one statement.
const replayBatchesInFlight = readBatchesInFlight

// replay is one request of a replay batch: its audit event (TokenID left
// nil: the statement names the token it finds) and what it must match.
type replay struct {
	ev          vault.AuditEvent
	businessKey string
	digest      []byte
	metadata    []byte // the request's metadata as JSON
	hasCVC      bool
	checked     bool // looked for already, in the new tokens' batch
	found       bool
	row         tokenRow      // the token found, by a batch of replays
	existing    replayedToken // the token found, by the new tokens' batch
}

// replayedToken is what the new tokens' batch answers about the token a
// replay found: what its masked record has that the request's has not.
type replayedToken struct {
	id                   *uuid.UUID
	createdAt, updatedAt *time.Time
	fingerprint          []byte
	cvcLive              bool
}

// replayBatch is a group commit of replays.
type replayBatch = groupCommit[*replay]

// replayTokensSQL finds, for each request of the batch ($1–$3 as in
// lookupRequestsSQL, $4–$7 business key, card digest, metadata and whether
// it carries a CVC), the token holding its business key when that token holds the
// same card (one probe of tokens_business_key per request: q is
// materialized so that both key columns reach the index). It answers ord
// and the token columns of each match; the batch then writes each match's
// audit row naming that token (inAuditedTx).
var replayTokensSQL = `
	WITH ` + lookupRequestsSQL + `, want AS (
		SELECT * FROM unnest($4::text[], $5::bytea[], $6::jsonb[], $7::bool[]) WITH ORDINALITY
		AS w(business_key, digest, metadata, has_cvc, ord)
	), q AS MATERIALIZED (
		SELECT r.*, w.business_key, w.digest, w.metadata AS want_metadata, w.has_cvc
		FROM req r JOIN want w ON w.ord = r.ord
	), t AS (
		SELECT q.ord, ` + qualified("k", tokenColumns) + `
		FROM q JOIN tokens k ON k.tenant_id = q.tenant_id AND k.business_key = q.business_key
		WHERE k.card_digest = q.digest AND k.metadata = q.want_metadata
		  AND (NOT q.has_cvc OR (k.cvc_ct IS NOT NULL AND k.cvc_expires_at > q.occurred_at))
	)
	SELECT ord, ` + tokenColumns + ` FROM t`

// replayTokens runs a replay batch: it marks each replay whose token holds
// its card and commits the audit rows of those, chained (inAuditedTx).
func (s *Service) replayTokens(batch []*replay) error {
	ctx, cancel := context.WithTimeout(context.Background(), lookupBatchTimeout)
	defer cancel()
	err := s.inAuditedTx(ctx, writerLanes, replayTokensSQL, replayArgs(batch), tenantsOf(batch, func(r *replay) uuid.UUID { return r.ev.TenantID }), func(rows pgx.Rows) ([]vault.AuditEvent, error) {
		if err := scanReplays(rows, batch); err != nil {
			return nil, err
		}
		var events []vault.AuditEvent
		for _, r := range batch {
			if r.found {
				ev := r.ev
				ev.TokenID = r.row.ID
				events = append(events, ev)
			}
		}
		return events, nil
	})
	return dbError(err, "token")
}

// replayArgs returns replayTokensSQL's arguments for batch.
func replayArgs(batch []*replay) []any {
	n := len(batch)
	at, tenants, tokens := make([]time.Time, n), make([]uuid.UUID, n), make([]uuid.UUID, n)
	keys, digests, metadata, cvcs := make([]string, n), make([][]byte, n), make([]string, n), make([]bool, n)
	for i, r := range batch {
		at[i], tenants[i], tokens[i] = r.ev.OccurredAt, r.ev.TenantID, r.ev.TokenID
		keys[i], digests[i], metadata[i], cvcs[i] = r.businessKey, r.digest, string(r.metadata), r.hasCVC
	}
	return []any{at, tenants, tokens, keys, digests, metadata, cvcs}
}

// scanReplays reads replayTokensSQL's rows into the replays they answer
// (by ord, 1-based), marks every replay of batch checked, and returns the
// rows' error once they are all read.
func scanReplays(rows pgx.Rows, batch []*replay) error {
	err := scanTokensByOrd(rows, len(batch), func(i int, row tokenRow) { batch[i].found, batch[i].row = true, row })
	if err != nil {
		return err
	}
	for _, r := range batch {
		r.checked = true
	}
	return nil
}

// replayed answers a tokenization whose business key is taken (r, its
// replay, nil without a business key or digest; tok, the masked record of
// the row it tried to insert) when the token holding the key holds the
// same card: its masked record, once the replay's audit row committed. The new tokens' batch looked already (r.checked); otherwise
// it is looked for in a batch of replays. ok is false when the stored card
// differs in any way (or cannot be compared by digest): the caller
// reconciles it.
func (s *Service) replayed(tk *tenantKeys, r *replay, tok vault.Token) (vault.Token, bool, error) {
	if r == nil {
		return vault.Token{}, false, nil
	}
	if !r.checked {
		if err := s.replays.do(r, s.replayTokens); err != nil {
			return vault.Token{}, false, err
		}
	}
	switch {
	case !r.found:
		return vault.Token{}, false, nil
	case r.existing.id != nil:
		// The same card, name, expiry and metadata as the request's (tok):
		// the stored token differs only in these.
		e := r.existing
		tok.ID, tok.CreatedAt, tok.UpdatedAt = *e.id, e.createdAt.UTC(), e.updatedAt.UTC()
		tok.Fingerprint, tok.CVCAvailable = e.fingerprint, e.cvcLive
		return tok, true, nil
	}
	out, err := s.masked(tk, r.row)
	return out, err == nil, err
}
