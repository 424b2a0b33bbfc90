package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// cvcPurgeBatch bounds how many rows one purge statement locks.
const cvcPurgeBatch = 1000

// PurgeExpiredCVCs destroys every CVC whose TTL has passed without a reveal
// (PCI DSS: no sensitive authentication data kept after it is needed) and
// writes one audit event per tenant and batch. It returns how many CVCs it
// destroyed, and a domain error when the database fails.
func (s *Service) PurgeExpiredCVCs(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := s.purgeCVCBatch(ctx)
		total += n
		if err != nil || n < cvcPurgeBatch {
			s.metrics.CVCSweep(total, err)
			return total, err
		}
	}
}

// purgeCVCBatch purges up to cvcPurgeBatch expired CVCs, skipping rows a
// request holds, and audits them in the same statement.
func (s *Service) purgeCVCBatch(ctx context.Context) (int64, error) {
	var n int64
	now := s.clock()
	err := s.inAuditedTx(ctx, writerLanes, `
		WITH purged AS (
			UPDATE tokens SET cvc_ct = NULL, cvc_expires_at = NULL
			WHERE id IN (SELECT id FROM tokens WHERE cvc_expires_at <= $1
			             ORDER BY cvc_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING tenant_id
		)
		SELECT tenant_id, count(*) FROM purged GROUP BY tenant_id ORDER BY tenant_id`,
		[]any{now, cvcPurgeBatch}, nil, func(rows pgx.Rows) ([]vault.AuditEvent, error) {
			events, total, err := perTenantEvents(rows, func(t uuid.UUID, count int64) vault.AuditEvent {
				return s.event(vault.Actor{TenantID: t, ClientAddr: "cvc-sweeper"}, vault.ActionCVCPurge, uuid.Nil,
					map[string]any{"count": count})
			})
			n = total
			return events, err
		})
	return n, dbError(err, "token")
}

// perTenantEvents reads (tenant id, count) rows into one audit event each
// (made by mk) and returns them with the sum of the counts.
func perTenantEvents(rows pgx.Rows, mk func(uuid.UUID, int64) vault.AuditEvent) ([]vault.AuditEvent, int64, error) {
	var events []vault.AuditEvent
	var total, count int64
	var t uuid.UUID
	_, err := pgx.ForEachRow(rows, []any{&t, &count}, func() error {
		events, total = append(events, mk(t, count)), total+count
		return nil
	})
	return events, total, err
}
