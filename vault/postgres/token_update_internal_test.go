package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// WriteUpdateBatch tokenizes each of ins (business keys already taken by
// other cards) for a as one update batch through writeUpdates, as
// concurrent requests would be, then settles each request as updateToken
// does; bad gives the last request an expiry month of 13, which the
// tokens table's CHECK refuses. It returns, per request, whether it was
// reconciled alone and its own error.
func WriteUpdateBatch(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput, bad bool) ([]bool, []error, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return nil, nil, err
	}
	var batch []*tokenUpdate
	for i, in := range ins {
		c, err := card.ParseCard(in.Card)
		if err != nil {
			return nil, nil, err
		}
		if bad && i == len(ins)-1 {
			c.Expiry.Month = 13
		}
		fp, fpKey, err := tk.fingerprint(c.PAN)
		if err != nil {
			return nil, nil, err
		}
		row, err := s.newTokenRow(tk, a.TenantID, in, c, fp, fpKey)
		if err != nil {
			return nil, nil, err
		}
		batch = append(batch, &tokenUpdate{a: a, tk: tk, row: row, card: c})
	}
	if err := s.writeUpdates(batch); err != nil {
		return nil, nil, err
	}
	alone, errs := make([]bool, len(batch)), make([]error, len(batch))
	for i, u := range batch {
		alone[i] = u.alone
		_, _, errs[i] = s.settleUpdate(ctx, u)
	}
	return alone, errs, nil
}

// WhileUpdateBatchLocked runs the first round trip of an update batch of
// ins for a (business keys already taken), calls f while its transaction
// holds what that round trip locked, then rolls it back. It returns the
// error of locking or f's.
func WhileUpdateBatchLocked(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput, f func() error) error {
	var batch []*tokenUpdate
	for _, in := range ins {
		batch = append(batch, &tokenUpdate{a: a, row: tokenRow{Token: vault.Token{TenantID: a.TenantID, BusinessKey: in.BusinessKey}}})
	}
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	defer rollback(conn)
	if _, err := s.lockUpdated(ctx, conn, batch); err != nil {
		return err
	}
	return f()
}
