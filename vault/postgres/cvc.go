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
		n, removed, err := s.purgeCVCBatch(ctx)
		total += n
		if err != nil || removed == 0 { // none due, or all held by requests until the next tick
			s.metrics.CVCSweep(total, err)
			return total, err
		}
	}
}

// purgeCVCBatch takes up to cvcPurgeBatch due entries off the CVC expiry
// queue (migration 024), destroys the ciphertext of those tokens whose own
// expiry has passed (a token whose CVC was revealed, replaced or deleted
// meanwhile has none, or a later expiry with its own entry) and audits
// them per tenant, in one statement. Entries and tokens another
// transaction holds are skipped, never waited for (a reveal locks its
// tokens in id order; waiting here in any other order could deadlock
// with it); a skipped token keeps its entry for the next pass. It returns
// how many CVCs it destroyed and how many entries it removed.
func (s *Service) purgeCVCBatch(ctx context.Context) (purged, removed int64, err error) {
	err = s.inAuditedTx(ctx, writerLanes, purgeCVCsSQL, []any{s.clock(), cvcPurgeBatch}, nil,
		func(rows pgx.Rows) (events []vault.AuditEvent, err error) {
			events, purged, removed, err = perTenantEvents(rows, func(t uuid.UUID, count int64) vault.AuditEvent {
				return s.event(vault.Actor{TenantID: t, ClientAddr: "cvc-sweeper"}, vault.ActionCVCPurge, uuid.Nil,
					map[string]any{"count": count})
			})
			return events, err
		})
	return purged, removed, dbError(err, "token")
}

// purgeCVCsSQL is purgeCVCBatch's statement ($1 now, $2 the batch size):
// it answers (tenant, CVCs destroyed) per tenant, then (NULL, entries
// removed). Only tokens with a CVC to destroy are locked (a revealed
// token's page is not written again), and clearing cvc_ct alone leaves
// every index of tokens unchanged. An entry goes once its token is held or
// has nothing to destroy (gone, revealed, or a later expiry with its own
// entry); a due token another transaction holds keeps its entry.
const purgeCVCsSQL = `
	WITH due AS (
		SELECT expires_at, token_id FROM cvc_expiries WHERE expires_at <= $1
		ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
	), held AS (
		SELECT id FROM tokens
		WHERE id IN (SELECT token_id FROM due) AND cvc_ct IS NOT NULL AND cvc_expires_at <= $1
		FOR UPDATE SKIP LOCKED
	), purged AS (
		UPDATE tokens SET cvc_ct = NULL FROM held WHERE tokens.id = held.id
		RETURNING tokens.tenant_id
	), removed AS (
		DELETE FROM cvc_expiries c USING due
		WHERE c.expires_at = due.expires_at AND c.token_id = due.token_id
		  AND (due.token_id IN (SELECT id FROM held) OR NOT EXISTS (
		       SELECT FROM tokens k WHERE k.id = due.token_id AND k.cvc_ct IS NOT NULL AND k.cvc_expires_at <= $1))
		RETURNING 1
	)
	(SELECT tenant_id, count(*) FROM purged GROUP BY tenant_id ORDER BY tenant_id)
	UNION ALL
	SELECT NULL, count(*) FROM removed`

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
