package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
)

// RotateRootKEK re-wraps every tenant keyset, data and fingerprint, and
// every live OpenPGP import key, from the configured root KEK to newKEK, one transaction per tenant, and audits each
// tenant; then every audit chain key (rewrapAuditKeys). Keysets the new KEK already opens are left alone, so an
// interrupted rotation can simply be run again. With dryRun it only checks
// that every keyset opens and counts. Running replicas keep their unwrapped
// keys; restart them with the new KEK URI. It returns a domain error naming
// no key material.
func (s *Service) RotateRootKEK(ctx context.Context, newKEK tink.AEAD, newURI string, dryRun bool) (vault.RootRotation, error) {
	return s.RotateRootKEKAs(ctx, "", newKEK, newURI, dryRun)
}

// RotateRootKEKAs is RotateRootKEK audited as the person operator at the
// command line. Its errors are RotateRootKEK's.
func (s *Service) RotateRootKEKAs(ctx context.Context, operator string, newKEK tink.AEAD, newURI string, dryRun bool) (vault.RootRotation, error) {
	var r vault.RootRotation
	ids, err := s.TenantIDs(ctx)
	if err != nil {
		return r, err
	}
	for _, id := range ids {
		n, already, err := s.rewrapTenant(ctx, operator, id, newKEK, newURI, dryRun)
		if err != nil {
			return r, err
		}
		r.Keysets, r.Already = r.Keysets+n, r.Already+already
		if n > 0 {
			r.Tenants++
		}
	}
	var err2 error
	r.AuditKeys, err2 = s.rewrapAuditKeys(ctx, newKEK, dryRun)
	return r, err2
}

// rewrapTenant re-wraps one tenant's keysets in one transaction and returns
// how many it re-wrapped and how many were already under newKEK.
func (s *Service) rewrapTenant(ctx context.Context, operator string, tenantID uuid.UUID, newKEK tink.AEAD, newURI string, dryRun bool) (int, int, error) {
	var n, already int
	err := s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT purpose, wrapped FROM tenant_keysets WHERE tenant_id = $1 ORDER BY purpose FOR UPDATE`, tenantID)
		if err != nil {
			return err
		}
		wrapped := map[crypto.Purpose][]byte{}
		for rows.Next() {
			var p string
			var w []byte
			if err := rows.Scan(&p, &w); err != nil {
				return err
			}
			wrapped[crypto.Purpose(p)] = w
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for purpose, w := range wrapped {
			done, err := s.rewrap(ctx, tx, tenantID, purpose, w, newKEK, dryRun)
			if err != nil {
				return err
			}
			if done {
				n++
			} else {
				already++
			}
		}
		pn, palready, err := s.rewrapPGPKeys(ctx, tx, tenantID, newKEK, dryRun)
		if err != nil {
			return err
		}
		n, already = n+pn, already+palready
		if n == 0 || dryRun {
			return nil
		}
		return s.insertAudit(ctx, tx, s.event(vault.OperatorNamed(tenantID, operator), vault.ActionKEKRotate, uuid.Nil,
			map[string]any{"keysets": n, "new_kek_uri": crypto.RedactKEKURI(newURI)}))
	})
	return n, already, err
}

// rewrap moves one keyset from the configured KEK to newKEK and reports
// whether it did; a keyset only newKEK opens is already done.
func (s *Service) rewrap(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, purpose crypto.Purpose, w []byte, newKEK tink.AEAD, dryRun bool) (bool, error) {
	h, err := crypto.UnwrapKeyset(w, s.keys.kek, tenantID.String(), purpose)
	if err != nil {
		if _, err2 := crypto.UnwrapKeyset(w, newKEK, tenantID.String(), purpose); err2 == nil {
			return false, nil
		}
		return false, keyError(tenantID, err)
	}
	if dryRun {
		return true, nil
	}
	nw, err := crypto.WrapKeyset(h, newKEK, tenantID.String(), purpose)
	if err != nil {
		return false, keyError(tenantID, err)
	}
	_, err = tx.Exec(ctx, `UPDATE tenant_keysets SET wrapped = $3, updated_at = $4 WHERE tenant_id = $1 AND purpose = $2`,
		tenantID, string(purpose), nw, s.clock())
	return true, err
}

// DestroyTenant crypto-shreds a tenant: its keysets are deleted, so its
// ciphertexts (and any backup of them) can never be opened again; its tokens,
// forwarding destinations and forwarding records are deleted, its API keys
// revoked and the tenant marked destroyed, in one
// transaction. The audit trail stays. It returns how many tokens were
// destroyed, or KindNotFound for an unknown or already destroyed tenant.
func (s *Service) DestroyTenant(ctx context.Context, tenantID uuid.UUID) (int64, error) {
	return s.DestroyTenantAs(ctx, "", tenantID)
}

// DestroyTenantAs is DestroyTenant audited as the person operator at the
// command line. Its errors are DestroyTenant's.
func (s *Service) DestroyTenantAs(ctx context.Context, operator string, tenantID uuid.UUID) (int64, error) {
	var tokens int64
	now := s.clock()
	err := s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		if _, err := s.getTenantTx(ctx, tx, tenantID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE tenant_id = $1`, tenantID)
		if err != nil {
			return err
		}
		tokens = tag.RowsAffected()
		for _, q := range []string{
			`DELETE FROM tenant_keysets WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`DELETE FROM key_jobs WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`UPDATE api_keys SET revoked_at = $2 WHERE tenant_id = $1 AND revoked_at IS NULL`,
			`UPDATE tenant_key_versions SET state = 'destroyed', destroyed_at = $2 WHERE tenant_id = $1 AND state <> 'destroyed'`,
			`UPDATE tenants SET destroyed_at = $2 WHERE id = $1`,
			`DELETE FROM webhooks WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`DELETE FROM forwarding_requests WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`DELETE FROM forwarding_destinations WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`DELETE FROM idempotency_keys WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`DELETE FROM pgp_keys WHERE tenant_id = $1 AND $2::timestamptz IS NOT NULL`,
			`UPDATE webhook_events SET given_up_at = $2 WHERE tenant_id = $1 AND delivered_at IS NULL AND given_up_at IS NULL`,
			`UPDATE import_jobs SET status = 'aborted', failure_reason = 'tenant destroyed', provider_key_ct = NULL,
			        forward_key_ct = NULL, lease_owner = NULL, lease_until = NULL, finished_at = $2, updated_at = $2
			 WHERE tenant_id = $1 AND status IN ('preparing', 'running')`,
		} {
			if _, err := tx.Exec(ctx, q, tenantID, now); err != nil {
				return err
			}
		}
		return s.insertAudit(ctx, tx, s.event(vault.OperatorNamed(tenantID, operator), vault.ActionTenantShred, uuid.Nil, map[string]any{"tokens": tokens}))
	})
	if err == nil {
		s.keys.forget(tenantID)
		s.apiKeys.forgetTenant(tenantID)
	}
	return tokens, err
}
