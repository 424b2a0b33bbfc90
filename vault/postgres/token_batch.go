package postgres

import (
	"context"
	"strings"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// newTokenBatch commits the new tokens of concurrent tokenize requests
// together (see groupCommit): one statement, one commit, and one lock of
// each data key the batch sealed with (migration 026's statement trigger)
// instead of one per token.
type newTokenBatch = groupCommit[*newToken]

// newTokenBatchTimeout bounds one batch (see batchTimeout).
const newTokenBatchTimeout = batchTimeout

// insertTokensSQL inserts new tokens and their webhook events: $1–$19 are the
// token columns as arrays, $20–$28 the audit events', $29 the event ids,
// $30 the sealed event data, $31 their key ids, $32 the event type and $33
// the card digests. Rows whose business key is taken (by an existing token
// or an earlier row of the batch) write no token. A row whose business
// key's token already holds the same card (rep: the same card digest and
// metadata and, when the row carries a CVC, a CVC still held within its
// TTL; one probe of tokens_business_key) is a replay: nothing is written
// for it here. The audit columns $20–$28 are not written here either: the
// batch writes the audit rows of the rows inserted, and of the replays
// (naming the existing token, with "existing": true), once it knows them
// (inAuditedTx). A row whose business key's token holds another card
// (taken) has that token locked, in id order as an update batch locks its
// tokens (token_update.go), so that the batch reconciles it in the same
// transaction (reconcileTaken). It answers, for each row, its id, then:
// for each row inserted, whether its event was enqueued; for each replay,
// false, and the existing token's id, timestamps, fingerprint and whether
// its CVC is live; for each taken row, the locked token's tokenColumns
// (NULL for the others).
var insertTokensSQL = `
	WITH r AS (
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[],
		                     $7::bytea[], $8::bytea[], $9::bytea[], $10::timestamptz[], $11::text[], $12::text[],
		                     $13::smallint[], $14::text[], $15::smallint[], $16::smallint[], $17::jsonb[],
		                     $18::timestamptz[], $19::timestamptz[],
		                     $20::timestamptz[], $21::uuid[], $22::uuid[], $23::text[], $24::uuid[], $25::text[],
		                     $26::text[], $27::text[], $28::jsonb[],
		                     $29::text[], $30::bytea[], $31::bigint[], $33::bytea[])
		AS r(` + tokenColumns + `,
		     a_at, a_tenant, a_key, a_action, a_token, a_request, a_client, a_outcome, a_detail,
		     e_id, e_ct, e_key, digest)
	), rep AS (
		SELECT r.id AS req_id, k.id, k.created_at, k.updated_at, k.fingerprint,
		       coalesce(k.cvc_ct IS NOT NULL AND k.cvc_expires_at > r.a_at, false) AS cvc_live
		FROM r JOIN tokens k ON k.tenant_id = r.tenant_id AND k.business_key = r.business_key
		WHERE k.card_digest = r.digest AND k.metadata = r.metadata
		  AND (r.cvc_ct IS NULL OR (k.cvc_ct IS NOT NULL AND k.cvc_expires_at > r.a_at))
	), taken AS MATERIALIZED (
		SELECT r.id AS req_id, ` + qualified("k", tokenColumns) + `
		FROM r JOIN tokens k ON k.tenant_id = r.tenant_id AND k.business_key = r.business_key
		WHERE r.id NOT IN (SELECT req_id FROM rep)
		ORDER BY k.id
		FOR UPDATE OF k
	), ins AS (
		INSERT INTO tokens (` + tokenColumns + `, card_digest)
		SELECT ` + tokenColumns + `, digest FROM r
		ON CONFLICT (tenant_id, business_key) WHERE business_key IS NOT NULL DO NOTHING
		RETURNING id
	), cvc AS (
		` + queueCVCExpiries("r JOIN ins USING (id) WHERE r.cvc_ct IS NOT NULL") + `
	), replayed AS (
		SELECT rep.* FROM rep WHERE rep.req_id NOT IN (SELECT id FROM ins)
	), event AS (
		INSERT INTO webhook_events (id, tenant_id, type, payload, payload_ct, key_id)
		SELECT r.e_id, w.tenant_id, $32::text, NULL::jsonb, r.e_ct, r.e_key
		FROM r JOIN ins USING (id) JOIN webhooks w ON w.tenant_id = r.tenant_id
		RETURNING id
	)
	SELECT req_id, false, NULL::uuid, NULL::timestamptz, NULL::timestamptz, NULL::bytea, false, ` + tokenColumns + `
	FROM taken
	UNION ALL
	SELECT r.id, r.e_id IN (SELECT id FROM event), NULL, NULL, NULL, NULL, false, ` + noTokenColumns + `
	FROM r JOIN ins USING (id)
	UNION ALL
	SELECT req_id, false, id, created_at, updated_at, fingerprint, cvc_live, ` + noTokenColumns + ` FROM replayed`

// tokenColumnCount is how many columns tokenColumns names.
var tokenColumnCount = len(splitColumns(tokenColumns))

// noTokenColumns stands for tokenColumns in insertTokensSQL's rows that
// are not a taken token's.
var noTokenColumns = strings.TrimSuffix(strings.Repeat("NULL, ", tokenColumnCount), ", ")

// writeNewTokens writes a batch in one statement. When that fails for a
// reason other than the database being unavailable, it writes the tokens
// one by one, so that one bad row fails only its own request.
func (s *Service) writeNewTokens(batch []*newToken) error {
	ctx, cancel := context.WithTimeout(context.Background(), newTokenBatchTimeout)
	defer cancel()
	if len(batch) == 1 {
		return s.insertOneToken(ctx, batch[0])
	}
	err := s.insertTokens(ctx, batch, true)
	if err == nil || vault.ErrorKind(err) == vault.KindUnavailable {
		return err
	}
	for _, nt := range batch {
		if !isClosed(nt.release) {
			nt.err = s.insertOneToken(ctx, nt)
		}
	}
	return nil
}

// insertTokens runs insertTokensSQL for batch and records which rows were
// inserted and enqueued, which were replays of the card their business
// key holds (their replay found, with the existing token), and which
// reconciled the token their business key holds (reconcileTaken). With
// release, the requests whose business key holds another card and which
// were not reconciled here are let go as soon as the statement answered
// (releaseTaken).
func (s *Service) insertTokens(ctx context.Context, batch []*newToken, release bool) error {
	byID := make(map[uuid.UUID]*newToken, len(batch))
	for _, nt := range batch {
		byID[nt.args[0].(uuid.UUID)] = nt
		if nt.replay != nil {
			nt.replay.checked = true
		}
	}
	var settled []*tokenUpdate
	err := s.inAuditedTxWrites(ctx, writerLanes, insertTokensSQL, insertTokensArgs(batch), tenantsOf(batch, func(nt *newToken) uuid.UUID { return nt.tenantID }), func(rows pgx.Rows) ([]vault.AuditEvent, batchWrite, error) {
		taken, err := scanNewTokens(rows, byID)
		if err != nil {
			return nil, nil, err
		}
		var w *updateWrites
		w, settled = s.reconcileTaken(ctx, batch, taken)
		if release {
			releaseTaken(batch)
		}
		events := append(newTokenAudits(batch), w.audits...)
		if len(events) == 0 {
			return nil, nil, errWroteNothing // every key taken by another card, none reconciled here
		}
		return events, w, nil
	})
	if err != nil {
		for _, nt := range batch {
			if !isClosed(nt.release) {
				nt.forget()
			}
		}
		return dbError(err, "token")
	}
	s.countUpdateEvents(settled)
	return nil
}

// forget clears what a failed batch recorded of nt, so that nt can be
// written again.
func (nt *newToken) forget() {
	nt.inserted, nt.enqueued, nt.locked, nt.reconciled = false, false, false, false
	if nt.replay != nil {
		*nt.replay = replay{ev: nt.replay.ev, businessKey: nt.replay.businessKey, digest: nt.replay.digest,
			metadata: nt.replay.metadata, hasCVC: nt.replay.hasCVC}
	}
	if nt.update != nil {
		nt.update.out, nt.update.enqueued, nt.update.alone = tokenRow{}, false, false
	}
}

// reconcileTaken reconciles, in the new tokens' batch, each request of
// batch that asks for it (nt.update) and whose business key's token the
// statement locked (taken, by tenant and business key), as a batch of
// updates would (buildUpdates): a replaced card kept as a version, the
// token's new card, its token.updated event and audit row, written with
// the batch's commit. A request it cannot settle so is left to reconcile
// in a batch of updates afterwards. It returns the writes and the requests
// it settled.
func (s *Service) reconcileTaken(ctx context.Context, batch []*newToken, taken map[tokenKey]tokenRow) (*updateWrites, []*tokenUpdate) {
	var nts []*newToken
	var ups []*tokenUpdate
	for _, nt := range batch {
		if nt.update != nil && nt.locked { // locked: its key's token exists, so nothing was inserted for it
			nts, ups = append(nts, nt), append(ups, nt.update)
		}
	}
	w := s.buildUpdates(ctx, ups, taken)
	var settled []*tokenUpdate
	for _, nt := range nts {
		if !nt.update.alone {
			nt.reconciled = true
			settled = append(settled, nt.update)
		}
	}
	return w, settled
}

// insertTokensTx runs insertTokensSQL for batch in tx (a file import's
// batch) and writes, in tx, the audit rows of the tokens it inserted. A row
// whose business key was taken is left to the caller, which brings that
// token up to date and audits it. It returns a domain error when the
// database fails.
func (s *Service) insertTokensTx(ctx context.Context, tx pgx.Tx, batch []*newToken) error {
	rows, err := tx.Query(ctx, insertTokensSQL, insertTokensArgs(batch)...)
	if err != nil {
		return dbError(err, "token")
	}
	byID := make(map[uuid.UUID]*newToken, len(batch))
	for _, nt := range batch {
		byID[nt.args[0].(uuid.UUID)] = nt
	}
	if _, err := scanNewTokens(rows, byID); err != nil {
		return dbError(err, "token")
	}
	var events []vault.AuditEvent
	for _, nt := range batch {
		if nt.inserted {
			events = append(events, nt.ev)
		}
	}
	return dbError(s.insertAudits(ctx, tx, events), "token")
}

// scanNewTokens reads insertTokensSQL's rows into the tokens of byID:
// which were inserted and enqueued, which replays found their token, and
// which found their business key's token holding another card, locked. It
// returns those tokens, by tenant and business key.
func scanNewTokens(rows pgx.Rows, byID map[uuid.UUID]*newToken) (map[tokenKey]tokenRow, error) {
	defer rows.Close()
	taken := map[tokenKey]tokenRow{}
	var id uuid.UUID
	var enqueued bool
	var existing replayedToken
	lead := []any{&id, &enqueued, &existing.id, &existing.createdAt, &existing.updatedAt, &existing.fingerprint, &existing.cvcLive}
	scan := append(lead, make([]any, tokenColumnCount)...) // nil: the token columns are skipped
	for rows.Next() {
		existing = replayedToken{}
		if rows.RawValues()[len(lead)] != nil {
			row, err := scanToken(rows, lead...)
			if err != nil {
				return nil, err
			}
			taken[tokenKey{row.TenantID, row.BusinessKey}] = row
			if nt := byID[id]; nt != nil {
				nt.locked = true
			}
			continue
		}
		if err := rows.Scan(scan...); err != nil {
			return nil, err
		}
		nt := byID[id]
		switch {
		case nt == nil:
		case existing.id == nil:
			nt.inserted, nt.enqueued = true, enqueued
		case nt.replay != nil:
			nt.replay.found, nt.replay.existing = true, existing
		}
	}
	return taken, rows.Err()
}

// releaseTaken lets go, before the batch commits, each request of a
// written batch whose business key holds a committed token with another
// card that the batch did not reconcile (reconcileTaken): it wrote nothing
// here, and reconciles that token in a batch of updates, whose commit its
// answer waits for. A request whose key an
// earlier row of this batch took waits for the commit, which makes that
// token visible to it.
func releaseTaken(batch []*newToken) {
	taken := map[tokenKey]bool{}
	for _, nt := range batch {
		if nt.inserted {
			taken[tokenKey{nt.tenantID, nt.businessKey}] = true
		}
	}
	for _, nt := range batch {
		k := tokenKey{nt.tenantID, nt.businessKey}
		if nt.inserted || nt.reconciled || nt.businessKey == "" || (nt.replay != nil && nt.replay.found) || taken[k] {
			continue
		}
		close(nt.release)
	}
}

// newTokenAudits returns the audit events of a written batch: each inserted
// token's, and each replay's (its own event, with "existing": true), naming
// the token it found.
func newTokenAudits(batch []*newToken) []vault.AuditEvent {
	var events []vault.AuditEvent
	for _, nt := range batch {
		switch {
		case nt.inserted:
			events = append(events, nt.ev)
		case nt.replay != nil && nt.replay.found:
			ev := nt.replay.ev
			ev.TokenID = *nt.replay.existing.id
			events = append(events, ev)
		}
	}
	return events
}

// insertTokensArgs returns insertTokensSQL's arguments for batch.
func insertTokensArgs(batch []*newToken) []any {
	cols := make([][]any, newTokenColumns+newTokenAudit+3)
	for i := range cols {
		cols[i] = make([]any, len(batch))
	}
	for j, nt := range batch {
		for i, v := range nt.args[:newTokenColumns+newTokenAudit] {
			cols[i][j] = v
		}
		cols[newTokenColumns+newTokenAudit][j] = nt.eventID
		cols[newTokenColumns+newTokenAudit+1][j] = nt.args[newTokenColumns+newTokenAudit]
		cols[newTokenColumns+newTokenAudit+2][j] = nt.args[newTokenColumns+newTokenAudit+1]
	}
	args := make([]any, 0, len(cols)+2)
	for _, c := range cols {
		args = append(args, c)
	}
	digests := make([][]byte, len(batch))
	for j, nt := range batch {
		digests[j] = nt.digest
	}
	return append(args, string(vault.EventTokenCreated), digests)
}
