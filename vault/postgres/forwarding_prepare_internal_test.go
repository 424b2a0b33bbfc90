package postgres

import (
	"context"
	"errors"

	"github.com/cardvault/cardvault/vault"
)

// ForwardBatchRequest is one forward of a pre-send batch built by a test.
// RefusedKey gives it an Idempotency-Key hash PostgreSQL refuses (too
// short), so that the database refuses any batch it is in.
type ForwardBatchRequest struct {
	Actor      vault.Actor
	In         vault.ForwardInput
	RefusedKey bool
}

// PrepareForwardBatch prepares reqs as one pre-send batch, as concurrent
// forwards would be, and then each alone when PostgreSQL refused the
// batch; nothing is sent. It returns each request's record (the zero
// value when none) and error, and whether the batch was refused.
func PrepareForwardBatch(ctx context.Context, s *Service, reqs []ForwardBatchRequest) ([]vault.ForwardingRequest, []error, bool, error) {
	batch := make([]*forwardPrep, len(reqs))
	for i, r := range reqs {
		tk, err := s.keys.get(ctx, r.Actor.TenantID)
		if err != nil {
			return nil, nil, false, err
		}
		idem, err := forwardIdempotency(tk, r.In)
		if err != nil {
			return nil, nil, false, err
		}
		if r.RefusedKey {
			idem.key, idem.fp = idem.key[:5], idem.fp[:5]
		}
		batch[i] = &forwardPrep{a: r.Actor, tk: tk, in: r.In, idem: idem}
	}
	batchErr := s.prepareForwardBatch(batch)
	recs, errs := make([]vault.ForwardingRequest, len(batch)), make([]error, len(batch))
	for i, f := range batch {
		p, err := s.settlePrep(ctx, f, batchErr)
		if p != nil {
			recs[i] = p.rec
		}
		errs[i] = dbError(err, "payment method")
	}
	return recs, errs, errors.Is(batchErr, errForwardAlone), nil
}
