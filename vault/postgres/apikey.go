package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// apiKeyPrefix starts every secret so that leaked keys are easy to spot.
const apiKeyPrefix = "cvk_"

// newSecret returns a fresh key: "cvk_" + 16 hex prefix + "_" + 256 random
// bits in base64url. The prefix locates the row; the whole string is hashed.
func newSecret() (secret, prefix string, err error) {
	var p [8]byte
	var k [32]byte
	if _, err := rand.Read(p[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(k[:]); err != nil {
		return "", "", err
	}
	prefix = hex.EncodeToString(p[:])
	return apiKeyPrefix + prefix + "_" + base64.RawURLEncoding.EncodeToString(k[:]), prefix, nil
}

// splitSecret returns the lookup prefix of a presented key, or false when the
// key does not have the shape newSecret makes.
func splitSecret(secret string) (string, bool) {
	rest, ok := strings.CutPrefix(secret, apiKeyPrefix)
	if !ok || len(rest) != 16+1+43 || rest[16] != '_' {
		return "", false
	}
	return rest[:16], true
}

func hashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// CreateAPIKey makes an API key for tenantID with scopes and returns its
// secret, shown once, with its record. It returns a KindNotFound error for an
// unknown tenant and KindInvalid for no scopes.
func (s *Service) CreateAPIKey(ctx context.Context, tenantID uuid.UUID, scopes []vault.Scope, description string) (string, vault.APIKey, error) {
	if len(scopes) == 0 {
		return "", vault.APIKey{}, vault.InvalidParam(vault.CodeInvalidScope, "scopes", "at least one scope is required")
	}
	secret, prefix, err := newSecret()
	if err != nil {
		return "", vault.APIKey{}, vault.Internal(err)
	}
	k := vault.APIKey{ID: uuid.New(), TenantID: tenantID, Prefix: prefix, Scopes: scopes,
		Description: description, CreatedAt: s.clock()}
	err = s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		if _, err := s.getTenantTx(ctx, tx, tenantID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, scopes, description, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			k.ID, k.TenantID, k.Prefix, hashSecret(secret), scopeStrings(scopes), description, k.CreatedAt); err != nil {
			return err
		}
		return insertAudit(ctx, tx, s.event(vault.Operator(tenantID), vault.ActionAPIKeyCreate, uuid.Nil,
			map[string]any{"api_key_id": k.ID, "scopes": scopeStrings(scopes)}))
	})
	if err != nil {
		return "", vault.APIKey{}, err
	}
	return secret, k, nil
}

func (s *Service) getTenantTx(ctx context.Context, q querier, id uuid.UUID) (uuid.UUID, error) {
	var got uuid.UUID
	err := q.QueryRow(ctx, `SELECT id FROM tenants WHERE id = $1 AND destroyed_at IS NULL FOR UPDATE`, id).Scan(&got)
	return got, dbError(err, "tenant")
}

func scopeStrings(scopes []vault.Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = string(s)
	}
	return out
}

const apiKeyColumns = `id, tenant_id, prefix, scopes, description, created_at, revoked_at, last_used_at`

func scanAPIKey(row pgx.Row) (vault.APIKey, error) {
	var k vault.APIKey
	var scopes []string
	err := row.Scan(&k.ID, &k.TenantID, &k.Prefix, &scopes, &k.Description, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt)
	for _, s := range scopes {
		k.Scopes = append(k.Scopes, vault.Scope(s))
	}
	return k, err
}

// ListAPIKeys returns the tenant's API keys, newest first, revoked ones
// included. It returns a KindUnavailable error when the database is down.
func (s *Service) ListAPIKeys(ctx context.Context, tenantID uuid.UUID) ([]vault.APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC`, tenantID)
	if err != nil {
		return nil, dbError(err, "api key")
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.APIKey, error) { return scanAPIKey(r) })
	return keys, dbError(err, "api key")
}

// RevokeAPIKey revokes the key with id at once and audits it. It returns a
// KindNotFound error for an unknown or already revoked key.
func (s *Service) RevokeAPIKey(ctx context.Context, id uuid.UUID) (vault.APIKey, error) {
	var k vault.APIKey
	err := s.inTx(ctx, "api key", func(tx pgx.Tx) error {
		var err error
		k, err = scanAPIKey(tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = $2
			WHERE id = $1 AND revoked_at IS NULL RETURNING `+apiKeyColumns, id, s.clock()))
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, s.event(vault.Operator(k.TenantID), vault.ActionAPIKeyRevoke, uuid.Nil,
			map[string]any{"api_key_id": k.ID}))
	})
	if err == nil {
		s.apiKeys.forget(k.ID)
	}
	return k, err
}

// Authenticate returns the actor a presented API key stands for, with the
// request's id and client address. A missing, malformed, unknown, revoked or
// mismatching key returns a KindUnauthenticated error and is audited; the
// presented key itself is never stored or logged. A valid key's row is
// remembered for up to a second (apiKeyCacheTTL): a revocation made through
// this Service applies at once, one made elsewhere within that second.
func (s *Service) Authenticate(ctx context.Context, secret, requestID, clientAddr string) (vault.Actor, error) {
	a := vault.Actor{RequestID: requestID, ClientAddr: clientAddr}
	if secret == "" {
		return a, s.authFailed(ctx, a, "missing_key")
	}
	prefix, ok := splitSecret(secret)
	if !ok {
		return a, s.authFailed(ctx, a, "malformed_key")
	}
	presented := hashSecret(secret)
	if k, ok := s.apiKeys.lookup(prefix, presented); ok {
		a.APIKeyID, a.TenantID, a.Scopes = k.id, k.tenantID, k.scopes
		return a, nil
	}
	var hash []byte
	var revoked *time.Time
	var scopes []string
	loaded := time.Now()
	err := s.db.QueryRow(ctx, `SELECT id, tenant_id, secret_hash, scopes, revoked_at FROM api_keys WHERE prefix = $1`,
		prefix).Scan(&a.APIKeyID, &a.TenantID, &hash, &scopes, &revoked)
	if err == pgx.ErrNoRows {
		return a, s.authFailed(ctx, a, "unknown_key")
	}
	if err != nil {
		return a, dbError(err, "api key")
	}
	if subtle.ConstantTimeCompare(hash, presented) != 1 {
		return a, s.authFailed(ctx, a, "wrong_secret")
	}
	if revoked != nil {
		return a, s.authFailed(ctx, a, "revoked_key")
	}
	for _, sc := range scopes {
		a.Scopes = append(a.Scopes, vault.Scope(sc))
	}
	s.apiKeys.store(prefix, cachedAPIKey{id: a.APIKeyID, tenantID: a.TenantID, hash: hash, scopes: a.Scopes, loaded: loaded})
	return a, nil
}

// authFailed audits a failed authentication and returns the error the caller
// sees, which does not say why, so that keys cannot be probed.
func (s *Service) authFailed(ctx context.Context, a vault.Actor, reason string) error {
	ev := s.event(a, vault.ActionAuthFailed, uuid.Nil, map[string]any{"reason": reason})
	ev.Outcome = vault.OutcomeFailure
	if err := insertAudit(ctx, s.db, ev); err != nil {
		return dbError(err, "audit event")
	}
	return vault.Errorf(vault.KindUnauthenticated, vault.CodeInvalidAPIKey, "a valid API key is required in the X-API-Key header")
}

// Require returns nil when the actor holds scope, and otherwise audits the
// denial and returns a KindForbidden error naming the missing scope.
func (s *Service) Require(ctx context.Context, a vault.Actor, scope vault.Scope) error {
	if a.Can(scope) {
		return nil
	}
	ev := s.event(a, vault.ActionAuthDenied, uuid.Nil, map[string]any{"missing_scope": string(scope)})
	ev.Outcome = vault.OutcomeDenied
	if err := insertAudit(ctx, s.db, ev); err != nil {
		return dbError(err, "audit event")
	}
	return vault.Errorf(vault.KindForbidden, vault.CodeMissingScope, "this API key lacks the %s scope", scope)
}
