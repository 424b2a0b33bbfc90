package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// exportPage is how many tokens one export transaction opens and audits.
const exportPage = 200

// ExportTokens calls each with every selected token of the actor's tenant
// and its card without CVC, in id order, a page at a time; the page's
// token.export audit rows commit before each sees any of its tokens. It
// returns how many tokens each got, and the first error of each, the KEK
// or the database.
func (s *Service) ExportTokens(ctx context.Context, a vault.Actor, f vault.ExportFilter, exportID uuid.UUID, each func(vault.Revealed) error) (int, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return 0, err
	}
	n, after := 0, uuid.Nil
	for {
		page, err := s.exportPage(ctx, a, tk, f, exportID, after)
		if err != nil || len(page) == 0 {
			return n, err
		}
		for _, r := range page {
			if err := each(r); err != nil {
				return n, err
			}
			n++
		}
		after = page[len(page)-1].Token.ID
	}
}

// exportPage opens the next page of tokens after the id after and commits
// their audit rows.
func (s *Service) exportPage(ctx context.Context, a vault.Actor, tk *tenantKeys, f vault.ExportFilter, exportID, after uuid.UUID) ([]vault.Revealed, error) {
	var page []vault.Revealed
	err := s.inTx(ctx, "token", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+tokenColumns+` FROM tokens
			WHERE tenant_id = $1 AND id > $2 AND ($3 = '' OR left(business_key, length($3)) = $3)
			  AND ($5::timestamptz IS NULL OR created_at > $5)
			ORDER BY id LIMIT $4`, a.TenantID, after, f.BusinessKeyPrefix, exportPage, f.CreatedAfter)
		if err != nil {
			return err
		}
		stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tokenRow, error) { return scanToken(r) })
		if err != nil {
			return err
		}
		for _, row := range stored {
			r, err := s.open(tk, row)
			if err != nil {
				return err
			}
			r.Card.CVC, r.Token.CVCAvailable = card.CVC{}, false
			if err := s.insertAudit(ctx, tx, s.event(a, vault.ActionTokenExport, row.ID, map[string]any{"export_id": exportID})); err != nil {
				return err
			}
			page = append(page, r)
		}
		return nil
	})
	return page, err
}

var _ vault.TokenExporter = (*Service)(nil)
