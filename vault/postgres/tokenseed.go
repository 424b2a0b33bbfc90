package postgres

import (
	"context"
	"encoding/json"
	"slices"
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
	chunks := (n + tokenSeedChunk - 1) / tokenSeedChunk
	return makeAhead(ctx, chunks, func(i int) ([][]any, error) {
		return s.seedChunk(tk, tenantID, i*tokenSeedChunk, min(tokenSeedChunk, n-i*tokenSeedChunk), cardOf)
	}, func(ctx context.Context, rows [][]any) error {
		if _, err := s.db.CopyFrom(ctx, pgx.Identifier{"tokens"}, cols, pgx.CopyFromRows(rows)); err != nil {
			return dbError(err, "token")
		}
		_, err := s.db.CopyFrom(ctx, pgx.Identifier{"cvc_expiries"}, []string{"expires_at", "token_id"}, pgx.CopyFromRows(cvcExpiries(cols, rows)))
		return dbError(err, "token")
	})
}

// cvcExpiries returns the CVC expiry queue's rows (expires_at, token_id)
// of the seeded token rows (columns cols) that hold a CVC.
func cvcExpiries(cols []string, rows [][]any) [][]any {
	id, cvc, expires := slices.Index(cols, "id"), slices.Index(cols, "cvc_ct"), slices.Index(cols, "cvc_expires_at")
	var out [][]any
	for _, r := range rows {
		if ct, _ := r[cvc].([]byte); ct != nil {
			out = append(out, []any{r[expires], r[id]})
		}
	}
	return out
}

// makeAhead makes parts one ahead of their writing: next returns the i-th
// of parts, and write writes it in another goroutine while next makes the
// one after (one CPU each). It returns the first error of either; the
// other then stops.
func makeAhead[T any](ctx context.Context, parts int, next func(i int) (T, error), write func(ctx context.Context, part T) error) error {
	g, gctx := errgroup.WithContext(ctx)
	made := make(chan T, 1)
	g.Go(func() error {
		defer close(made)
		for i := range parts {
			p, err := next(i)
			if err != nil {
				return err
			}
			select {
			case made <- p:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		for p := range made {
			if err := write(gctx, p); err != nil {
				return err
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
