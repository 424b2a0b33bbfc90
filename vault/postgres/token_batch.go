package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// newTokenBatch commits the new tokens of concurrent tokenize requests
// together (see groupCommit): one statement, one commit, and one lock of
// the tenant row for the foreign keys of the whole batch instead of one
// shared lock per token (which PostgreSQL turns into a multixact when many
// transactions hold it at once).
type newTokenBatch = groupCommit[*newToken]

// newTokenBatchTimeout bounds one batch (see batchTimeout).
const newTokenBatchTimeout = batchTimeout

// insertTokensSQL is insertTokenAuditedSQL for many rows: $1–$19 are the
// token columns as arrays, $20–$28 the audit events', $29 the event ids,
// $30 the sealed event data, $31 their key ids and $32 the event type. Rows
// whose business key is taken (by an existing token or an earlier row of
// the batch) write nothing. It answers, for each row inserted, its id and
// whether its event was enqueued.
const insertTokensSQL = `
	WITH r AS (
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[],
		                     $7::bytea[], $8::bytea[], $9::bytea[], $10::timestamptz[], $11::text[], $12::text[],
		                     $13::smallint[], $14::text[], $15::smallint[], $16::smallint[], $17::jsonb[],
		                     $18::timestamptz[], $19::timestamptz[],
		                     $20::timestamptz[], $21::uuid[], $22::uuid[], $23::text[], $24::uuid[], $25::text[],
		                     $26::text[], $27::text[], $28::jsonb[],
		                     $29::text[], $30::bytea[], $31::bigint[])
		AS r(` + tokenColumns + `,
		     a_at, a_tenant, a_key, a_action, a_token, a_request, a_client, a_outcome, a_detail,
		     e_id, e_ct, e_key)
	), ins AS (
		INSERT INTO tokens (` + tokenColumns + `)
		SELECT ` + tokenColumns + ` FROM r
		ON CONFLICT (tenant_id, business_key) WHERE business_key IS NOT NULL DO NOTHING
		RETURNING id
	), audit AS (
		INSERT INTO audit_events (` + auditInsertColumns + `)
		SELECT a_at, a_tenant, a_key, a_action, a_token, a_request, a_client, a_outcome, a_detail
		FROM r JOIN ins USING (id)
	), event AS (
		INSERT INTO webhook_events (id, tenant_id, type, payload, payload_ct, key_id)
		SELECT r.e_id, w.tenant_id, $32::text, NULL::jsonb, r.e_ct, r.e_key
		FROM r JOIN ins USING (id) JOIN webhooks w ON w.tenant_id = r.tenant_id
		RETURNING id
	)
	SELECT r.id, r.e_id IN (SELECT id FROM event) FROM r JOIN ins USING (id)`

// writeNewTokens writes a batch in one statement. When that fails for a
// reason other than the database being unavailable, it writes the tokens
// one by one, so that one bad row fails only its own request.
func (s *Service) writeNewTokens(batch []*newToken) error {
	ctx, cancel := context.WithTimeout(context.Background(), newTokenBatchTimeout)
	defer cancel()
	if len(batch) == 1 {
		return s.insertOneToken(ctx, batch[0])
	}
	err := s.insertTokens(ctx, s.db, batch)
	if err == nil || vault.ErrorKind(err) == vault.KindUnavailable {
		return err
	}
	for _, nt := range batch {
		nt.err = s.insertOneToken(ctx, nt)
	}
	return nil
}

// insertTokens runs insertTokensSQL for batch on q (the pool, or the
// transaction of a file import's batch) and records which rows were
// inserted and enqueued.
func (s *Service) insertTokens(ctx context.Context, q querier, batch []*newToken) error {
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
	args := make([]any, 0, len(cols)+1)
	for _, c := range cols {
		args = append(args, c)
	}
	args = append(args, string(vault.EventTokenCreated))
	rows, err := q.Query(ctx, insertTokensSQL, args...)
	if err != nil {
		return dbError(err, "token")
	}
	byID := make(map[uuid.UUID]*newToken, len(batch))
	for _, nt := range batch {
		byID[nt.args[0].(uuid.UUID)] = nt
	}
	var id uuid.UUID
	var enqueued bool
	_, err = pgx.ForEachRow(rows, []any{&id, &enqueued}, func() error {
		if nt := byID[id]; nt != nil {
			nt.inserted, nt.enqueued = true, enqueued
		}
		return nil
	})
	return dbError(err, "token")
}
