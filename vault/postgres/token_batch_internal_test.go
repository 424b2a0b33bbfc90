package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/google/uuid"
)

// WriteTokenBatch tokenizes each of ins for a as one batch through
// writeNewTokens, as concurrent requests would be; foreign adds a row of a
// tenant that does not exist, which violates a foreign key. It returns, per
// row (the foreign one last), whether it was inserted and its own error.
func WriteTokenBatch(ctx context.Context, s *Service, a vault.Actor, ins []vault.TokenizeInput, foreign bool) ([]bool, []error, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return nil, nil, err
	}
	var batch []*newToken
	for i, in := range ins {
		card, err := card.ParseCard(in.Card)
		if err != nil {
			return nil, nil, err
		}
		fp, fpKey, err := tk.fingerprint(card.PAN)
		if err != nil {
			return nil, nil, err
		}
		row, err := s.newTokenRow(tk, a.TenantID, in, card, fp, fpKey)
		if err != nil {
			return nil, nil, err
		}
		tok, err := s.masked(tk, row)
		if err != nil {
			return nil, nil, err
		}
		nt, err := s.prepareNewToken(a, tk, row, tok)
		if err != nil {
			return nil, nil, err
		}
		if foreign && i == len(ins)-1 {
			nt.tenantID = uuid.New()
			nt.args[1] = nt.tenantID // tokens.tenant_id
		}
		batch = append(batch, nt)
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
