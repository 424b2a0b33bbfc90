package postgres

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// WalkBatchAfter returns the ids of the batch of the tenant's tokens that
// a job walking its tokens (walk: "reencrypt" or "refingerprint") takes
// after the cursor after, in a transaction it rolls back.
func WalkBatchAfter(ctx context.Context, s *Service, tenantID uuid.UUID, walk string, after uuid.UUID) ([]uuid.UUID, error) {
	tk, err := s.keys.fresh(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var ids []uuid.UUID
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		switch walk {
		case "reencrypt":
			b, err := s.resealBatch(ctx, tx, tenantID, tk, after)
			ids = b.ids
			return err
		case "refingerprint":
			ids, _, err = s.refingerprintBatch(ctx, tx, tenantID, tk, after)
			return err
		}
		return errors.New("no such walk: " + walk)
	})
	return ids, err
}
