package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
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
	return s.IssueAPIKey(ctx, vault.NewAPIKey{TenantID: tenantID, Scopes: scopes, Description: description})
}

// IssueAPIKey makes the API key in asks for, audited as the operator, and
// returns its secret, shown once, with its record; with in.ExpiresIn it
// stops authenticating that long after its creation. It returns a
// KindNotFound error for an unknown tenant and KindInvalid for no scopes or
// a negative ExpiresIn.
func (s *Service) IssueAPIKey(ctx context.Context, in vault.NewAPIKey) (string, vault.APIKey, error) {
	return s.issueAPIKey(ctx, vault.OperatorNamed(in.TenantID, in.Operator), in)
}

// CreateTenantAPIKey makes an API key of the actor's tenant with scopes,
// audits it as the actor, and returns its secret, shown once, with its
// record. A key can only grant scopes it holds itself: another returns a
// KindForbidden error (missing_scope); no scope returns KindInvalid.
func (s *Service) CreateTenantAPIKey(ctx context.Context, a vault.Actor, scopes []vault.Scope, description string) (string, vault.APIKey, error) {
	for _, sc := range scopes {
		if !a.Can(sc) {
			return "", vault.APIKey{}, vault.Errorf(vault.KindForbidden, vault.CodeMissingScope,
				"this API key lacks the %s scope, so it cannot grant it", sc)
		}
	}
	return s.issueAPIKey(ctx, a, vault.NewAPIKey{TenantID: a.TenantID, Scopes: scopes, Description: description})
}

// issueAPIKey makes the key in asks for and audits it as by.
func (s *Service) issueAPIKey(ctx context.Context, by vault.Actor, in vault.NewAPIKey) (string, vault.APIKey, error) {
	if err := checkNewAPIKey(in); err != nil {
		return "", vault.APIKey{}, err
	}
	secret, prefix, err := newSecret()
	if err != nil {
		return "", vault.APIKey{}, vault.Internal(err)
	}
	k := vault.APIKey{ID: uuid.New(), TenantID: in.TenantID, Prefix: prefix, Scopes: in.Scopes,
		Description: in.Description, CreatedAt: s.clock()}
	if in.ExpiresIn > 0 {
		exp := k.CreatedAt.Add(in.ExpiresIn)
		k.ExpiresAt = &exp
	}
	err = s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		return s.insertAPIKey(ctx, tx, by, k, hashSecret(secret))
	})
	if err != nil {
		return "", vault.APIKey{}, err
	}
	return secret, k, nil
}

// checkNewAPIKey returns a KindInvalid error for a key without scopes or
// with a negative lifetime.
func checkNewAPIKey(in vault.NewAPIKey) error {
	if len(in.Scopes) == 0 {
		return vault.InvalidParam(vault.CodeInvalidScope, "scopes", "at least one scope is required")
	}
	if in.ExpiresIn < 0 {
		return vault.InvalidParam(vault.CodeInvalidExpiry, "expires_in", "an API key's lifetime must be positive")
	}
	return nil
}

// insertAPIKey stores k with the hash of its secret and audits its
// creation as by, in tx, after checking its tenant exists and is not
// destroyed.
func (s *Service) insertAPIKey(ctx context.Context, tx pgx.Tx, by vault.Actor, k vault.APIKey, hash []byte) error {
	if _, err := s.getTenantTx(ctx, tx, k.TenantID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, scopes, description, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		k.ID, k.TenantID, k.Prefix, hash, scopeStrings(k.Scopes), k.Description, k.CreatedAt, k.ExpiresAt); err != nil {
		return err
	}
	detail := map[string]any{"api_key_id": k.ID, "scopes": scopeStrings(k.Scopes)}
	if k.ExpiresAt != nil {
		detail["expires_at"] = vault.Timestamp(*k.ExpiresAt)
	}
	return s.insertAudit(ctx, tx, s.event(by, vault.ActionAPIKeyCreate, uuid.Nil, detail))
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

const apiKeyColumns = `id, tenant_id, prefix, scopes, description, created_at, revoked_at, expires_at, last_used_at`

func scanAPIKey(row pgx.Row) (vault.APIKey, error) {
	var k vault.APIKey
	var scopes []string
	err := row.Scan(&k.ID, &k.TenantID, &k.Prefix, &scopes, &k.Description, &k.CreatedAt, &k.RevokedAt, &k.ExpiresAt, &k.LastUsedAt)
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

// APIKeyByID returns the API key with id, revoked or not. It returns a
// KindNotFound error for an unknown id.
func (s *Service) APIKeyByID(ctx context.Context, id uuid.UUID) (vault.APIKey, error) {
	k, err := scanAPIKey(s.db.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id))
	return k, dbError(err, "api key")
}

// APIKeysByPrefix returns up to limit API keys, revoked ones included,
// whose non-secret prefix (the 16 hex digits after "cvk_") starts with
// prefix, oldest first. It returns a KindInvalid error unless prefix is 1
// to 16 lowercase hex digits.
func (s *Service) APIKeysByPrefix(ctx context.Context, prefix string, limit int) ([]vault.APIKey, error) {
	if !isKeyPrefix(prefix) {
		return nil, vault.InvalidParam(vault.CodeInvalidPrefix, "prefix", "an API key prefix is 1 to 16 hex digits")
	}
	rows, err := s.db.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE starts_with(prefix, $1) ORDER BY created_at, id LIMIT $2`, prefix, limit)
	if err != nil {
		return nil, dbError(err, "api key")
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.APIKey, error) { return scanAPIKey(r) })
	return keys, dbError(err, "api key")
}

// isKeyPrefix reports whether p is 1 to 16 lowercase hex digits.
func isKeyPrefix(p string) bool {
	if p == "" || len(p) > 16 {
		return false
	}
	for _, c := range p {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ListTenantAPIKeys returns the actor's tenant's API keys, newest first,
// revoked ones included. It returns a domain error when the database fails.
func (s *Service) ListTenantAPIKeys(ctx context.Context, a vault.Actor) ([]vault.APIKey, error) {
	return s.ListAPIKeys(ctx, a.TenantID)
}

// RevokeAPIKey revokes the key with id at once and audits it. It returns a
// KindNotFound error for an unknown or already revoked key.
func (s *Service) RevokeAPIKey(ctx context.Context, id uuid.UUID) (vault.APIKey, error) {
	return s.revokeAPIKey(ctx, nil, "", id)
}

// RevokeAPIKeyAs is RevokeAPIKey audited as the person operator at the
// command line. Its errors are RevokeAPIKey's.
func (s *Service) RevokeAPIKeyAs(ctx context.Context, operator string, id uuid.UUID) (vault.APIKey, error) {
	return s.revokeAPIKey(ctx, nil, operator, id)
}

// RevokeTenantAPIKey revokes the actor's tenant's key id at once, ends its
// console sessions, and audits it as the actor. It returns a KindNotFound
// error for an unknown, foreign or already revoked key.
func (s *Service) RevokeTenantAPIKey(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.APIKey, error) {
	return s.revokeAPIKey(ctx, &a, "", id)
}

// revokeAPIKey revokes key id, of by's tenant when by is not nil, and
// audits it as by (as the person operator at the command line, of the key's
// tenant, when by is nil).
func (s *Service) revokeAPIKey(ctx context.Context, by *vault.Actor, operator string, id uuid.UUID) (vault.APIKey, error) {
	var k vault.APIKey
	tenant := uuid.Nil
	if by != nil {
		tenant = by.TenantID
	}
	err := s.inTx(ctx, "api key", func(tx pgx.Tx) error {
		var err error
		k, err = scanAPIKey(tx.QueryRow(ctx, `UPDATE api_keys SET revoked_at = $2
			WHERE id = $1 AND revoked_at IS NULL AND ($3::uuid IS NULL OR tenant_id = $3)
			RETURNING `+apiKeyColumns, id, s.clock(), nullUUID(tenant)))
		if err != nil {
			return err
		}
		if err := endKeySessions(ctx, tx, k.ID); err != nil {
			return err
		}
		actor := vault.OperatorNamed(k.TenantID, operator)
		if by != nil {
			actor = *by
		}
		return s.insertAudit(ctx, tx, s.event(actor, vault.ActionAPIKeyRevoke, uuid.Nil,
			map[string]any{"api_key_id": k.ID}))
	})
	if err == nil {
		s.apiKeys.forget(k.ID)
	}
	return k, err
}

// Authenticate returns the actor a presented API key stands for, with the
// request's id and client address. A missing, malformed, unknown, revoked,
// expired or mismatching key returns a KindUnauthenticated error and is
// audited; the presented key itself is never stored or logged. A valid key's
// row is remembered for up to a second (apiKeyCacheTTL): a revocation made
// through this Service applies at once, one made elsewhere within that
// second. The key's last_used_at is written at most once every
// vault.APIKeyUsageInterval (see noteUse).
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
	now := s.clock()
	k, ok := s.apiKeys.lookup(prefix, presented)
	if !ok || k.expired(now) {
		var reason string
		var err error
		if k, reason, err = s.loadAPIKey(ctx, prefix, presented, now); err != nil {
			return a, dbError(err, "api key")
		}
		if reason != "" {
			a.APIKeyID, a.TenantID = k.id, k.tenantID
			return a, s.authFailed(ctx, a, reason)
		}
		s.apiKeys.store(prefix, k)
	}
	return s.authenticated(ctx, a, prefix, k, now), nil
}

// authenticated is the actor a of key k, whose use at now is noted.
func (s *Service) authenticated(ctx context.Context, a vault.Actor, prefix string, k cachedAPIKey, now time.Time) vault.Actor {
	a.APIKeyID, a.TenantID, a.Scopes = k.id, k.tenantID, k.scopes
	s.noteUse(ctx, prefix, k.id, now)
	return a
}

// loadAPIKey reads the key of prefix from the database and checks it
// against the presented hash at now. It returns the key and "" when it
// authenticates, or what it knows of the key (its id and tenant once the
// row is found) with why it does not: unknown_key, wrong_secret,
// revoked_key or expired_key. It returns the driver's error when the
// database fails.
func (s *Service) loadAPIKey(ctx context.Context, prefix string, presented []byte, now time.Time) (cachedAPIKey, string, error) {
	k := cachedAPIKey{loaded: time.Now()}
	var revoked, lastUsed *time.Time
	var scopes []string
	err := s.db.QueryRow(ctx, `SELECT id, tenant_id, secret_hash, scopes, revoked_at, expires_at, last_used_at
		FROM api_keys WHERE prefix = $1`, prefix).Scan(&k.id, &k.tenantID, &k.hash, &scopes, &revoked, &k.expiresAt, &lastUsed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return cachedAPIKey{}, "unknown_key", nil
	case err != nil:
		return cachedAPIKey{}, "", err
	case subtle.ConstantTimeCompare(k.hash, presented) != 1:
		return k, "wrong_secret", nil
	case revoked != nil:
		return k, "revoked_key", nil
	case k.expired(now):
		return k, "expired_key", nil
	}
	if lastUsed != nil {
		k.lastUsed = *lastUsed
	}
	for _, sc := range scopes {
		k.scopes = append(k.scopes, vault.Scope(sc))
	}
	return k, "", nil
}

// lastUseTimeout bounds the write of an API key's last use.
const lastUseTimeout = 250 * time.Millisecond

// noteUse records that key id authenticated at now, writing last_used_at
// only when the value known here is at least vault.APIKeyUsageInterval old
// (claimUse), and then only if no other process wrote a newer one meanwhile:
// a busy key costs one write a minute, not one per request. A failed write
// is logged, never the request's failure.
func (s *Service) noteUse(ctx context.Context, prefix string, id uuid.UUID, now time.Time) {
	if !s.apiKeys.claimUse(prefix, now, vault.APIKeyUsageInterval) {
		return
	}
	// bookkeeping never holds a request up for long: a database that cannot
	// commit (no synchronous standby left) costs this request lastUseTimeout
	ctx, cancel := context.WithTimeout(ctx, lastUseTimeout)
	defer cancel()
	_, err := s.db.Exec(ctx, `UPDATE api_keys SET last_used_at = $2
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2::timestamptz - $3::interval)`,
		id, now, vault.APIKeyUsageInterval)
	if err != nil {
		s.log.Warn("recording an API key's last use", "api_key_id", id, "error", err)
	}
}

// authFailed audits a failed authentication (counted with the repeats of
// its source, see RecordAccessFailure) and returns the error the caller
// sees, which does not say why, so that keys cannot be probed.
func (s *Service) authFailed(ctx context.Context, a vault.Actor, reason string) error {
	s.RecordAccessFailure(ctx, vault.AccessFailure{Action: vault.ActionAuthFailed, Outcome: vault.OutcomeFailure,
		Reason: reason, Route: vault.RouteOf(ctx), TenantID: a.TenantID, APIKeyID: a.APIKeyID,
		ClientAddr: a.ClientAddr, RequestID: a.RequestID})
	return vault.Errorf(vault.KindUnauthenticated, vault.CodeInvalidAPIKey, "a valid API key is required in the X-API-Key header")
}

// Require returns nil when the actor holds scope, and otherwise audits the
// denial (counted with the repeats of its source, see RecordAccessFailure)
// and returns a KindForbidden error naming the missing scope.
func (s *Service) Require(ctx context.Context, a vault.Actor, scope vault.Scope) error {
	if a.Can(scope) {
		return nil
	}
	s.RecordAccessFailure(ctx, vault.AccessFailure{Action: vault.ActionAuthDenied, Outcome: vault.OutcomeDenied,
		Reason: vault.CodeMissingScope, Scope: scope, Route: vault.RouteOf(ctx), TenantID: a.TenantID,
		APIKeyID: a.APIKeyID, ClientAddr: a.ClientAddr, RequestID: a.RequestID})
	return vault.Errorf(vault.KindForbidden, vault.CodeMissingScope, "this API key lacks the %s scope", scope)
}
