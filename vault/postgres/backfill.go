package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
)

// BackfillKeyVersions gives every keyset that has no key-version rows —
// tenants created before key versions were recorded (migration 002) — its
// rows, read from the keyset itself through the root KEK, and the sealing
// rows (migration 008) of its primary and active data keys, without which
// the tenant cannot tokenize. Keysets that have their rows are left alone,
// so running it again does nothing. It returns how many keysets it filled
// in, or the first error (a keyset the KEK cannot open, the database).
func (s *Service) BackfillKeyVersions(ctx context.Context) (int, error) {
	rows, err := s.db.Query(ctx, `SELECT k.tenant_id, k.purpose, k.wrapped, k.created_at FROM tenant_keysets k
		JOIN tenants t ON t.id = k.tenant_id
		WHERE t.destroyed_at IS NULL AND NOT EXISTS (SELECT 1 FROM tenant_key_versions v
			WHERE v.tenant_id = k.tenant_id AND v.purpose = k.purpose)`)
	if err != nil {
		return 0, dbError(err, "tenant")
	}
	type missing struct {
		tenant  uuid.UUID
		purpose crypto.Purpose
		wrapped []byte
		created time.Time
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (missing, error) {
		var m missing
		var purpose string
		err := r.Scan(&m.tenant, &purpose, &m.wrapped, &m.created)
		m.purpose = crypto.Purpose(purpose)
		return m, err
	})
	if err != nil {
		return 0, dbError(err, "tenant")
	}
	for _, m := range found {
		if err := s.backfillKeyset(ctx, m.tenant, m.purpose, m.wrapped, m.created); err != nil {
			return 0, err
		}
	}
	return len(found), nil
}

// backfillKeyset records the key versions of one keyset, and for a data
// keyset the sealing rows of its keys that may seal, in one transaction.
func (s *Service) backfillKeyset(ctx context.Context, tenantID uuid.UUID, purpose crypto.Purpose, wrapped []byte, created time.Time) error {
	h, err := crypto.UnwrapKeyset(wrapped, s.keys.kek, tenantID.String(), purpose)
	if err != nil {
		return keyError(tenantID, err)
	}
	return s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		for _, k := range crypto.Keys(h) {
			if _, err := tx.Exec(ctx, `
				INSERT INTO tenant_key_versions (tenant_id, purpose, key_id, state, created_at, promoted_at)
				VALUES ($1, $2, $3, $4::text, $5, CASE WHEN $4::text = 'primary' THEN $5::timestamptz END)
				ON CONFLICT DO NOTHING`, tenantID, string(purpose), int64(k.ID), string(k.State), created); err != nil {
				return err
			}
			if purpose != crypto.PurposeData || k.State == crypto.KeyDisabled {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tenant_sealing_keys (tenant_id, key_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
				tenantID, int64(k.ID)); err != nil {
				return err
			}
		}
		return nil
	})
}
