package postgres

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
)

// CreateTenant creates a tenant with fresh data and fingerprint keysets,
// wrapped by the root KEK, and audits it, in one transaction. It returns a
// KindInvalid error for an empty or over-long name.
func (s *Service) CreateTenant(ctx context.Context, name string) (vault.Tenant, error) {
	return s.CreateTenantAs(ctx, "", name)
}

// CreateTenantAs is CreateTenant audited as the person operator at the
// command line. Its errors are CreateTenant's.
func (s *Service) CreateTenantAs(ctx context.Context, operator, name string) (vault.Tenant, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > 200 {
		return vault.Tenant{}, vault.InvalidParam(vault.CodeInvalidName, "name", "tenant name must be 1 to 200 characters")
	}
	t := vault.Tenant{ID: uuid.New(), Name: name, CreatedAt: s.clock()}
	wrapped, err := s.newWrappedKeysets(t.ID)
	if err != nil {
		return vault.Tenant{}, err
	}
	err = s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)`,
			t.ID, t.Name, t.CreatedAt); err != nil {
			return err
		}
		for purpose, w := range wrapped {
			if _, err := tx.Exec(ctx, `
				INSERT INTO tenant_keysets (tenant_id, purpose, wrapped, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $4)`, t.ID, string(purpose), w.wrapped, t.CreatedAt); err != nil {
				return err
			}
			ch := keyChange{keyID: w.primary, state: crypto.KeyPrimary}
			if err := s.recordKeyState(ctx, tx, t.ID, purpose, ch); err != nil {
				return err
			}
		}
		op := vault.OperatorNamed(t.ID, operator)
		if err := s.insertAudit(ctx, tx, s.event(op, vault.ActionTenantCreate, uuid.Nil, map[string]any{"name": t.Name})); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(op, vault.ActionKeysetCreate, uuid.Nil,
			map[string]any{"purposes": []string{string(crypto.PurposeData), string(crypto.PurposeFingerprint)}}))
	})
	return t, err
}

// wrappedKeyset is a new keyset wrapped by the root KEK, with its primary
// key id.
type wrappedKeyset struct {
	wrapped []byte
	primary uint32
}

// newWrappedKeysets makes a tenant's data and fingerprint keysets and wraps
// each with the root KEK bound to the tenant id and purpose.
func (s *Service) newWrappedKeysets(tenantID uuid.UUID) (map[crypto.Purpose]wrappedKeyset, error) {
	makers := map[crypto.Purpose]func() (*keyset.Handle, error){
		crypto.PurposeData:        crypto.NewDataKeyset,
		crypto.PurposeFingerprint: crypto.NewFingerprintKeyset,
	}
	out := make(map[crypto.Purpose]wrappedKeyset, len(makers))
	for purpose, mk := range makers {
		h, err := mk()
		if err != nil {
			return nil, vault.Internal(err)
		}
		w, err := crypto.WrapKeyset(h, s.keys.kek, tenantID.String(), purpose)
		if err != nil {
			return nil, keyError(tenantID, err)
		}
		out[purpose] = wrappedKeyset{wrapped: w, primary: h.KeysetInfo().GetPrimaryKeyId()}
	}
	return out, nil
}

// GetTenant returns the tenant with id, or a KindNotFound error.
func (s *Service) GetTenant(ctx context.Context, id uuid.UUID) (vault.Tenant, error) {
	var t vault.Tenant
	err := s.db.QueryRow(ctx, `SELECT id, name, created_at FROM tenants WHERE id = $1`, id).
		Scan(&t.ID, &t.Name, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, dbError(err, "tenant")
}

// CheckKEK loads one tenant's keysets with the configured root KEK, so that
// a wrong or unreachable KEK stops startup instead of failing requests; when
// there is no tenant yet it makes one encrypt/decrypt round trip through the
// KEK instead. It returns a KindUnavailable error (kek_unavailable) when
// the KEK fails, and a KindMisconfigured one (kek_mismatch) when it works
// but cannot decrypt the keysets.
func (s *Service) CheckKEK(ctx context.Context) error {
	var id uuid.UUID
	err := s.db.QueryRow(ctx, `SELECT tenant_id FROM tenant_keysets ORDER BY created_at LIMIT 1`).Scan(&id)
	if err == pgx.ErrNoRows {
		return s.keys.probe()
	}
	if err != nil {
		return dbError(err, "tenant")
	}
	_, err = s.keys.get(ctx, id)
	return err
}

// TenantByName returns the oldest tenant called name, or a KindNotFound
// error.
func (s *Service) TenantByName(ctx context.Context, name string) (vault.Tenant, error) {
	var t vault.Tenant
	err := s.db.QueryRow(ctx, `SELECT id, name, created_at FROM tenants WHERE name = $1
		ORDER BY created_at LIMIT 1`, name).Scan(&t.ID, &t.Name, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, dbError(err, "tenant")
}

// ListTenants returns every tenant, oldest first, destroyed ones included,
// with how many unrevoked, unexpired API keys and how many tokens each
// holds. It returns a domain error when the database fails.
func (s *Service) ListTenants(ctx context.Context) ([]vault.TenantSummary, error) {
	rows, err := s.db.Query(ctx, `
		SELECT t.id, t.name, t.created_at, t.destroyed_at,
		       (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL
		          AND (k.expires_at IS NULL OR k.expires_at > $1)),
		       (SELECT count(*) FROM tokens k WHERE k.tenant_id = t.id)
		FROM tenants t ORDER BY t.created_at, t.id`, s.clock())
	if err != nil {
		return nil, dbError(err, "tenant")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.TenantSummary, error) {
		var t vault.TenantSummary
		err := r.Scan(&t.ID, &t.Name, &t.CreatedAt, &t.DestroyedAt, &t.ActiveAPIKeys, &t.Tokens)
		t.CreatedAt = t.CreatedAt.UTC()
		return t, err
	})
	return out, dbError(err, "tenant")
}
