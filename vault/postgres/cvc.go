package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// cvcPurgeBatch bounds how many expiry entries one purge statement takes.
const cvcPurgeBatch = 1000

// PurgeExpiredCVCs destroys every CVC whose TTL has passed without a reveal
// (PCI DSS: no sensitive authentication data kept after it is needed) and
// writes one audit event per tenant and batch. It returns how many CVCs it
// destroyed, and a domain error when the database fails.
func (s *Service) PurgeExpiredCVCs(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, taken, err := s.purgeCVCBatch(ctx)
		total += n
		if err != nil || taken < cvcPurgeBatch {
			s.metrics.CVCSweep(total, err)
			return total, err
		}
	}
}

// purgeCVCBatch takes up to cvcPurgeBatch due entries off the CVC expiry
// queue (migration 024), skipping entries another sweeper holds, destroys
// the ciphertext of those tokens whose own expiry has passed (a token whose
// CVC was revealed, replaced or deleted meanwhile has none, or a later
// expiry with its own entry) and audits them per tenant, in one
// statement. It returns how many CVCs it destroyed and how many entries
// it took.
func (s *Service) purgeCVCBatch(ctx context.Context) (purged, taken int64, err error) {
	err = s.inAuditedTx(ctx, writerLanes, purgeCVCsSQL, []any{s.clock(), cvcPurgeBatch}, nil,
		func(rows pgx.Rows) (events []vault.AuditEvent, err error) {
			events, purged, taken, err = perTenantEvents(rows, func(t uuid.UUID, count int64) vault.AuditEvent {
				return s.event(vault.Actor{TenantID: t, ClientAddr: "cvc-sweeper"}, vault.ActionCVCPurge, uuid.Nil,
					map[string]any{"count": count})
			})
			return events, err
		})
	return purged, taken, dbError(err, "token")
}

// purgeCVCsSQL is purgeCVCBatch's statement ($1 now, $2 the batch size):
// it answers (tenant, CVCs destroyed) per tenant, then (NULL, entries
// taken). Clearing cvc_ct alone leaves every index of tokens unchanged.
const purgeCVCsSQL = `
	WITH due AS (
		DELETE FROM cvc_expiries
		WHERE (expires_at, token_id) IN (
			SELECT expires_at, token_id FROM cvc_expiries WHERE expires_at <= $1
			ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING token_id
	), purged AS (
		UPDATE tokens SET cvc_ct = NULL
		WHERE id IN (SELECT token_id FROM due) AND cvc_ct IS NOT NULL AND cvc_expires_at <= $1
		RETURNING tenant_id
	)
	(SELECT tenant_id, count(*) FROM purged GROUP BY tenant_id ORDER BY tenant_id)
	UNION ALL
	SELECT NULL, count(*) FROM due`

// perTenantEvents reads (tenant id, count) rows into one audit event each
// (made by mk) and returns them with the sum of the counts, and the count
// of a row whose tenant is NULL (how many rows a batch took, where that
// differs from what it changed) apart.
func perTenantEvents(rows pgx.Rows, mk func(uuid.UUID, int64) vault.AuditEvent) (events []vault.AuditEvent, total, untenanted int64, err error) {
	var count int64
	var t *uuid.UUID
	_, err = pgx.ForEachRow(rows, []any{&t, &count}, func() error {
		if t == nil {
			untenanted += count
		} else {
			events, total = append(events, mk(*t, count)), total+count
		}
		return nil
	})
	return events, total, untenanted, err
}
