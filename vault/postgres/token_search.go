package postgres

import (
	"context"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// paramSearchNumber is the request field a searched card number comes from.
const paramSearchNumber = "number"

// SearchTokens returns the actor's tenant's masked tokens holding the card
// number, newest first, after the token startingAfter when it is not
// uuid.Nil, and audits the search with how many it found. The number is
// fingerprinted with the tenant's fingerprint keyset and then dropped: it
// is never stored, logged or audited. It returns a KindInvalid error (param
// "number") for a value that is not a card number, KindBadRequest for a
// limit outside 1–100 or an unknown starting_after id, and a domain error
// when the keys or the database fail.
func (s *Service) SearchTokens(ctx context.Context, a vault.Actor, number card.Secret, limit int, startingAfter uuid.UUID) (vault.TokenPage, error) {
	pan, err := parseSearchedNumber(number)
	if err != nil {
		return vault.TokenPage{}, err
	}
	if err := checkLimit(limit); err != nil {
		return vault.TokenPage{}, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.TokenPage{}, err
	}
	fp, _, err := tk.fingerprint(pan)
	if err != nil {
		return vault.TokenPage{}, err
	}
	p := vault.ListTokensParams{Fingerprint: fp, Limit: limit, StartingAfter: startingAfter}
	return s.listTokens(ctx, a, tk, p, vault.ActionTokenSearch)
}

// parseSearchedNumber parses a searched card number as tokenize does (spaces
// and dashes dropped, 12–19 digits, Luhn-valid). Its error names the
// search's own field and never quotes the value.
func parseSearchedNumber(number card.Secret) (card.PAN, error) {
	pan, err := card.ParsePAN(number.Reveal())
	if err != nil {
		e := vault.AsError(err)
		return card.PAN{}, vault.InvalidParam(e.Code, paramSearchNumber, e.Message)
	}
	return pan, nil
}
