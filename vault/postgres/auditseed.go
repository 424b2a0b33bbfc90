package postgres

import (
	"context"

	"github.com/google/uuid"
)

// auditSeedChunk is how many audit rows one seeding statement inserts.
const auditSeedChunk = 50_000

// SeedAuditEvents writes n token.read audit rows of tenantID, as a
// long-running tenant's trail would hold (`cardvault bench --preload`),
// and chains them under the current rules before it returns, so that the
// chainer has nothing left to do for them. It returns a domain error when
// the database fails.
func (s *Service) SeedAuditEvents(ctx context.Context, tenantID uuid.UUID, n int) error {
	now := s.clock()
	for done := 0; done < n; done += auditSeedChunk {
		k := min(auditSeedChunk, n-done)
		_, err := s.db.Exec(ctx, `
			INSERT INTO audit_events (occurred_at, tenant_id, action, request_id, client_addr, outcome, detail)
			SELECT $1::timestamptz - make_interval(secs => ($3 - g) / 100.0), $2, 'token.read', 'seed', 'preload',
			       'success', '{}'::jsonb
			FROM generate_series(1, $4::int) g`, now, tenantID, n-done, k)
		if err != nil {
			return dbError(err, "audit event")
		}
	}
	_, err := s.ChainAudit(ctx)
	return err
}
