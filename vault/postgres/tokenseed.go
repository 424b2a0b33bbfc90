package postgres

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

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
// `cardvault bench --preload`, it is not a way to import cards. The next
// chunk is sealed while the last one is copied (one CPU each). It returns
// a KindInvalid error for a card that does not parse and a domain error
// when the database fails.
func (s *Service) SeedTokens(ctx context.Context, tenantID uuid.UUID, n int, cardOf func(i int) vault.TokenizeInput) error {
	tk, err := s.keys.get(ctx, tenantID)
	if err != nil {
		return err
	}
	cols := append(splitColumns(tokenColumns), "card_digest")
	g, gctx := errgroup.WithContext(ctx)
	chunks := make(chan [][]any, 1)
	g.Go(func() error {
		defer close(chunks)
		for done := 0; done < n; done += tokenSeedChunk {
			rows, err := s.seedChunk(tk, tenantID, done, min(tokenSeedChunk, n-done), cardOf)
			if err != nil {
				return err
			}
			select {
			case chunks <- rows:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for rows := range chunks {
			if _, err := s.db.CopyFrom(gctx, pgx.Identifier{"tokens"}, cols, pgx.CopyFromRows(rows)); err != nil {
				return dbError(err, "token")
			}
		}
		return nil
	})
	return g.Wait()
}

// seedChunk returns the rows of the k tokens from the from-th on.
func (s *Service) seedChunk(tk *tenantKeys, tenantID uuid.UUID, from, k int, cardOf func(i int) vault.TokenizeInput) ([][]any, error) {
	rows := make([][]any, 0, k)
	for i := from; i < from+k; i++ {
		r, err := s.seedRow(tk, tenantID, cardOf(i))
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
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
