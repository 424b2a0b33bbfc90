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

// OutcomeBatchItem is one forward's outcome in a batch built by a test:
// its pending record, answered 200 with a small body. BadKey makes
// PostgreSQL refuse it (a key id the tenant never had).
type OutcomeBatchItem struct {
	Rec    vault.ForwardingRequest
	BadKey bool
}

// WriteOutcomeBatch writes items' outcomes as one batch of the outcomes'
// group commit, and then each alone as recordOutcome does when PostgreSQL
// refused the batch. It returns each item's error and whether the batch
// was refused.
func WriteOutcomeBatch(ctx context.Context, s *Service, items []OutcomeBatchItem) ([]error, bool, error) {
	batch := make([]*outcomeWrite, len(items))
	recs := make([]vault.ForwardingRequest, len(items))
	for i, it := range items {
		p := &preparedForward{rec: it.Rec}
		if err := s.db.QueryRow(ctx, `SELECT request_ct, key_id FROM forwarding_requests WHERE tenant_id = $1 AND id = $2`,
			it.Rec.TenantID, it.Rec.ID).Scan(&p.requestCT, &p.keyID); err != nil {
			return nil, false, err
		}
		tk, err := s.keys.get(ctx, it.Rec.TenantID)
		if err != nil {
			return nil, false, err
		}
		recs[i] = it.Rec
		recs[i].Status, recs[i].Response = vault.ForwardSucceeded, &vault.ForwardedResponse{Status: 200, Body: `{"ok":true}`}
		if batch[i], err = s.sealOutcome(tk, p, recs[i], 200); err != nil {
			return nil, false, err
		}
		if it.BadKey {
			batch[i].keyID, batch[i].requestCT = 1, p.requestCT
		}
	}
	_ = s.writeOutcomeBatch(batch)
	errs := make([]error, len(batch))
	refused := false
	for i, w := range batch {
		refused = refused || w.alone
		errs[i] = dbError(w.err, "forwarding request")
		if w.alone || isSealingKeyViolation(w.err) {
			errs[i] = s.storeOutcomeSealed(ctx, recs[i].TenantID, recs[i], 200)
		}
	}
	return errs, refused, nil
}
