package postgres

import (
	"context"
	"slices"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// WriteTokenBatch tokenizes each of ins for a as one batch through
// writeNewTokens, as concurrent requests would be; with bad, the last row
// is one the table refuses (an IIN its CHECK constraint rejects). It
// returns, per row, whether it was inserted and its own error.
func WriteTokenBatch(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput, bad bool) ([]bool, []error, error) {
	batch, err := newTokenBatchOf(ctx, s, a, ins, bad, false)
	if err != nil {
		return nil, nil, err
	}
	if err := s.writeNewTokens(batch); err != nil {
		return nil, nil, err
	}
	inserted, errs := make([]bool, len(batch)), make([]error, len(batch))
	for i, nt := range batch {
		inserted[i], errs[i] = nt.inserted, nt.err
	}
	return inserted, errs, nil
}

// ReleasedByTokenBatch writes ins for a as one batch, as WriteTokenBatch,
// and returns, per row, whether it was inserted and whether the batch let
// its request go before committing.
func ReleasedByTokenBatch(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput) ([]bool, []bool, error) {
	batch, err := newTokenBatchOf(ctx, s, a, ins, false, false)
	if err != nil {
		return nil, nil, err
	}
	if err := s.writeNewTokens(batch); err != nil {
		return nil, nil, err
	}
	inserted, released := make([]bool, len(batch)), make([]bool, len(batch))
	for i, nt := range batch {
		inserted[i], released[i] = nt.inserted, isClosed(nt.release)
	}
	return inserted, released, nil
}

// ReconciledByTokenBatch writes ins for a as one batch, as Tokenize's
// requests would be (each may reconcile, in the batch, the token its
// business key holds with another card), and returns, per row, whether it
// was inserted, reconciled in the batch, and let go before the commit.
func ReconciledByTokenBatch(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput) (inserted, reconciled, released []bool, err error) {
	batch, err := newTokenBatchOf(ctx, s, a, ins, false, true)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.writeNewTokens(batch); err != nil {
		return nil, nil, nil, err
	}
	for _, nt := range batch {
		inserted, reconciled = append(inserted, nt.inserted), append(reconciled, nt.reconciled)
		released = append(released, isClosed(nt.release))
	}
	return inserted, reconciled, released, nil
}

// newTokenBatchOf prepares ins for a as the rows of a new tokens' batch
// (see WriteTokenBatch for bad); with reconcile, each row reconciles in
// the batch the token its business key holds with another card, as
// Tokenize's do.
func newTokenBatchOf(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput, bad, reconcile bool) ([]*newToken, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return nil, err
	}
	var batch []*newToken
	for i, in := range ins {
		card, err := card.ParseCard(in.Card)
		if err != nil {
			return nil, err
		}
		fp, fpKey, err := tk.fingerprint(card.PAN)
		if err != nil {
			return nil, err
		}
		row, err := s.newTokenRow(tk, a.TenantID, in, card, fp, fpKey)
		if err != nil {
			return nil, err
		}
		tok, err := s.masked(tk, row)
		if err != nil {
			return nil, err
		}
		nt, err := s.prepareNewToken(a, tk, row, tok)
		if err != nil {
			return nil, err
		}
		if bad && i == len(ins)-1 {
			nt.args[slices.Index(splitColumns(tokenColumns), "iin")] = "not an IIN"
		}
		if reconcile {
			nt.update = &tokenUpdate{a: a, tk: tk, row: row, card: card}
		}
		batch = append(batch, nt)
	}
	return batch, nil
}
