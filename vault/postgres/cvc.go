package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
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
	err := s.db.QueryRow(ctx, `
		WITH purged AS (
			UPDATE tokens SET cvc_ct = NULL, cvc_expires_at = NULL
			WHERE id IN (SELECT id FROM tokens WHERE cvc_expires_at <= $1
			             ORDER BY cvc_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING tenant_id
		), per_tenant AS (
			SELECT tenant_id, count(*) AS n FROM purged GROUP BY tenant_id
		), audited AS (
			INSERT INTO audit_events (occurred_at, tenant_id, action, client_addr, outcome, detail)
			SELECT $1, tenant_id, $3, 'cvc-sweeper', 'success', jsonb_build_object('count', n)
			FROM per_tenant
		)
		SELECT coalesce(sum(n), 0)::bigint FROM per_tenant`,
		s.clock(), cvcPurgeBatch, string(vault.ActionCVCPurge)).Scan(&n)
	return n, dbError(err, "token")
}
