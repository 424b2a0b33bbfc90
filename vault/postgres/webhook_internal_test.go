package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// EnqueueEvent exposes enqueueEvent, the import jobs' way into the outbox,
// to the external tests.
var EnqueueEvent = enqueueEvent

// WebhookRowsUnderKey exposes webhookRowsUnderKey to the external tests.
var WebhookRowsUnderKey = webhookRowsUnderKey

// ResealWebhookRows runs resealWebhookRows for tenantID in a transaction of
// its own, with freshly loaded keys.
func ResealWebhookRows(ctx context.Context, s *Service, tenantID uuid.UUID) (int, error) {
	tk, err := s.keys.fresh(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	var n int
	err = s.inTx(ctx, "webhook", func(tx pgx.Tx) error {
		n, err = s.resealWebhookRows(ctx, tx, tenantID, tk)
		return err
	})
	return n, err
}
