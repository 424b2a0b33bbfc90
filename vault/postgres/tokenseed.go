package postgres

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// tokenSeedChunk is how many tokens one COPY of SeedTokens writes.
const tokenSeedChunk = 10_000

// SeedTokens stores n tokens of tenantID, the i-th holding card(i), through
// the real sealing code (each field sealed under the tenant's primary key
// and bound to its token, the keyed fingerprint and card digest), written
// with COPY in chunks of tokenSeedChunk, one transaction each, without
// audit rows or webhook events: it fills a database to a size for
// `cardvault bench --preload`, it is not a way to import cards. It returns
// a KindInvalid error for a card that does not parse and a domain error
// when the database fails.
func (s *Service) SeedTokens(ctx context.Context, tenantID uuid.UUID, n int, cardOf func(i int) vault.TokenizeInput) error {
	tk, err := s.keys.get(ctx, tenantID)
	if err != nil {
		return err
	}
	cols := append(splitColumns(tokenColumns), "card_digest")
	for done := 0; done < n; done += tokenSeedChunk {
		k := min(tokenSeedChunk, n-done)
		rows := make([][]any, 0, k)
		for i := done; i < done+k; i++ {
			r, err := s.seedRow(tk, tenantID, cardOf(i))
			if err != nil {
				return err
			}
			rows = append(rows, r)
		}
		if _, err := s.db.CopyFrom(ctx, pgx.Identifier{"tokens"}, cols, pgx.CopyFromRows(rows)); err != nil {
			return dbError(err, "token")
		}
	}
	return nil
}

// seedRow returns the token columns and card digest of a new token of in.
func (s *Service) seedRow(tk *tenantKeys, tenantID uuid.UUID, in vault.TokenizeInput) ([]any, error) {
	c, err := card.ParseCard(in.Card)
	if err != nil {
		return nil, vault.AsError(err)
	}
	fp, fpKey, err := tk.fingerprint(c.PAN)
	if err != nil {
		return nil, err
	}
	row, err := s.newTokenRow(tk, tenantID, in, c, fp, fpKey)
	if err != nil {
		return nil, err
	}
	metadata, err := json.Marshal(row.Metadata)
	if err != nil {
		return nil, vault.Internal(err)
	}
	return []any{row.ID, row.TenantID, nullString(row.BusinessKey), row.Fingerprint, row.fpKeyID, int64(row.sealed.keyID),
		[]byte(row.sealed.pan), nilIfEmpty(row.sealed.name), nilIfEmpty(row.sealed.cvc), row.sealed.cvcExpiresAt,
		row.IIN, row.LastFour, int16(row.PANLength), string(row.Scheme), int16(row.ExpiryMonth), int16(row.ExpiryYear),
		metadata, row.CreatedAt, row.UpdatedAt, row.digest}, nil
}

// splitColumns returns the names of a comma-separated column list.
func splitColumns(cols string) []string {
	out := strings.Split(cols, ",")
	for i, c := range out {
		out[i] = strings.TrimSpace(c)
	}
	return out
}
