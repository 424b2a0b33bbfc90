package postgres

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// keepVersion stores old, the card an update is replacing, as a sealed
// version of its token, within the update's transaction. Its ciphertexts
// move as they are (the CVC is not kept); the foreign key to its sealing
// key locks that key like a token write does.
func (s *Service) keepVersion(ctx context.Context, q querier, old tokenRow) error {
	_, err := q.Exec(ctx, `
		INSERT INTO token_versions (`+versionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		versionArgs(old, s.clock())...)
	return err
}

// versionColumns are the columns keepVersion writes, in versionArgs' order.
const versionColumns = `token_id, tenant_id, key_id, pan_ct, name_ct, fingerprint, fingerprint_key_id,
	iin, last_four, pan_length, scheme, exp_month, exp_year, valid_from, replaced_at`

// versionArgs returns the versionColumns of old kept as a version replaced
// at replacedAt.
func versionArgs(old tokenRow, replacedAt time.Time) []any {
	return []any{old.ID, old.TenantID, int64(old.sealed.keyID), []byte(old.sealed.pan), nilIfEmpty(old.sealed.name),
		old.Fingerprint, old.fpKeyID, old.IIN, old.LastFour, old.PANLength, string(old.Scheme),
		old.ExpiryMonth, old.ExpiryYear, old.UpdatedAt, replacedAt}
}

// fingerprintText is how a fingerprint appears in audit rows and answers.
func fingerprintText(fp []byte) string { return base64.RawURLEncoding.EncodeToString(fp) }

// ListTokenVersions returns the masked versions of the actor's tenant's
// token id that updates replaced, newest first, and audits the read. It
// returns KindNotFound for an unknown or foreign id.
func (s *Service) ListTokenVersions(ctx context.Context, a vault.Actor, id uuid.UUID) ([]vault.TokenVersion, error) {
	var out []vault.TokenVersion
	err := s.inTx(ctx, "token", func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokens WHERE id = $1 AND tenant_id = $2)`,
			id, a.TenantID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return pgx.ErrNoRows
		}
		var err error
		if out, err = readVersions(ctx, tx, a.TenantID, id); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionTokenVersionsList, id, map[string]any{"count": len(out)}))
	})
	return out, err
}

// readVersions reads a token's versions, newest first.
func readVersions(ctx context.Context, q querier, tenantID, id uuid.UUID) ([]vault.TokenVersion, error) {
	rows, err := q.Query(ctx, `SELECT id, token_id, iin, last_four, pan_length, scheme, exp_month, exp_year,
		       fingerprint, valid_from, replaced_at
		FROM token_versions WHERE token_id = $1 AND tenant_id = $2 ORDER BY id DESC`, id, tenantID)
	if err != nil {
		return nil, err
	}
	out := []vault.TokenVersion{}
	for rows.Next() {
		var v vault.TokenVersion
		var scheme string
		if err := rows.Scan(&v.ID, &v.TokenID, &v.IIN, &v.LastFour, &v.PANLength, &scheme, &v.ExpiryMonth,
			&v.ExpiryYear, &v.Fingerprint, &v.ValidFrom, &v.ReplacedAt); err != nil {
			rows.Close()
			return nil, err
		}
		v.Scheme, v.ValidFrom, v.ReplacedAt = card.Scheme(scheme), v.ValidFrom.UTC(), v.ReplacedAt.UTC()
		out = append(out, v)
	}
	return out, rows.Err()
}

// pruneTokenVersionsSQL deletes at most $2 card versions replaced before
// $1: an update of a million cards replaces a million versions at once,
// which one statement would delete in one transaction.
const pruneTokenVersionsSQL = `
	DELETE FROM token_versions WHERE id IN (
		SELECT id FROM token_versions WHERE replaced_at < $1
		LIMIT $2 FOR UPDATE SKIP LOCKED)`

// PruneTokenVersions deletes the replaced card versions older than
// retention, in batches of at most retentionBatch per statement, and
// returns how many it deleted, also when it fails part-way with a domain
// error.
func (s *Service) PruneTokenVersions(ctx context.Context, retention time.Duration) (int64, error) {
	return s.pruneTokenVersions(ctx, retention, retentionBatch)
}

// pruneTokenVersions is PruneTokenVersions with batches of batch rows.
func (s *Service) pruneTokenVersions(ctx context.Context, retention time.Duration, batch int) (int64, error) {
	var n int64
	err := s.pruneInBatches(ctx, pruneTokenVersionsSQL, s.clock().Add(-retention), batch, &n)
	return n, err
}

// versionsUnderKey counts the tenant's card versions sealed with keyID.
func versionsUnderKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM token_versions WHERE tenant_id = $1 AND key_id = $2`,
		tenantID, int64(keyID)).Scan(&n)
	return n, err
}

// resealVersions re-seals the tenant's card versions still under another
// key than tk's primary, within tx; the re-encryption job calls it. It
// returns how many it re-sealed, or the error of a field that does not open.
func (s *Service) resealVersions(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	primary := tk.sealer.PrimaryKeyID()
	rows, err := tx.Query(ctx, `SELECT id, token_id, pan_ct, name_ct FROM token_versions
		WHERE tenant_id = $1 AND key_id <> $2 FOR UPDATE`, tenantID, int64(primary))
	if err != nil {
		return 0, err
	}
	var ids []int64
	var pans, names [][]byte
	for rows.Next() {
		var id int64
		var tokenID uuid.UUID
		var pan, name []byte
		if err := rows.Scan(&id, &tokenID, &pan, &name); err != nil {
			rows.Close()
			return 0, err
		}
		if pan, err = s.reseal(tk, tenantID, tokenID, fieldPAN, pan); err == nil {
			name, err = s.reseal(tk, tenantID, tokenID, fieldName, name)
		}
		if err != nil {
			rows.Close()
			return 0, err
		}
		ids, pans, names = append(ids, id), append(pans, pan), append(names, name)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE token_versions v SET key_id = $2, pan_ct = n.pan, name_ct = n.name
		FROM unnest($1::bigint[], $3::bytea[], $4::bytea[]) AS n(id, pan, name) WHERE v.id = n.id`,
		ids, int64(primary), pans, names)
	return len(ids), err
}
