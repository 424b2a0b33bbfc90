package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// sessionPrefix starts every console session secret.
const sessionPrefix = "cvs_"

// newSessionSecret returns "cvs_" and 256 random bits in base64url.
func newSessionSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return sessionPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// sessionCSRF derives the CSRF token of a session from its secret, so that
// neither is stored: the vault keeps the hash of each.
func sessionCSRF(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("cardvault console csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func sessionHash(v string) []byte {
	sum := sha256.Sum256([]byte(v))
	return sum[:]
}

// StartConsoleSession signs the actor (authenticated by its API key) in
// for life, audits the sign-in, and returns the session's secret with the
// session. It prunes ended sessions on the way. It returns a KindInvalid
// error for a life without a TTL or an idle timeout, and a domain error
// when the database fails.
func (s *Service) StartConsoleSession(ctx context.Context, a vault.Actor, life vault.SessionLife) (string, vault.ConsoleSession, error) {
	if life.TTL <= 0 || life.Idle <= 0 {
		return "", vault.ConsoleSession{}, vault.InvalidParam(vault.CodeParameterInvalid, "life", "a session needs a TTL and an idle timeout")
	}
	secret, err := newSessionSecret()
	if err != nil {
		return "", vault.ConsoleSession{}, vault.Internal(err)
	}
	now := s.clock()
	sess := vault.ConsoleSession{Actor: a, CSRFToken: sessionCSRF(secret), ExpiresAt: now.Add(life.TTL)}
	err = s.inTx(ctx, "api key", func(tx pgx.Tx) error {
		if _, err := pruneSessions(ctx, tx, now); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, startSessionSQL, sessionHash(secret), a.APIKeyID, a.TenantID, sessionHash(sess.CSRFToken),
			a.ClientAddr, now, life.Idle, sess.ExpiresAt).Scan(&sess.KeyPrefix, &sess.KeyDescription)
		if err == pgx.ErrNoRows { // the key was revoked since it authenticated
			return sessionInvalid()
		}
		if err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionConsoleSignIn, uuid.Nil,
			map[string]any{"expires_at": vault.Timestamp(sess.ExpiresAt)}))
	})
	if err != nil {
		return "", vault.ConsoleSession{}, err
	}
	return secret, sess, nil
}

// startSessionSQL stores a session of the API key $2 of tenant $3 with the
// key's scopes, unless the key has been revoked, and returns the key's
// prefix and description.
const startSessionSQL = `
	WITH k AS (SELECT id, tenant_id, scopes, prefix, description FROM api_keys
	           WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL FOR SHARE),
	     ins AS (INSERT INTO console_sessions (id_hash, tenant_id, api_key_id, scopes, csrf_hash, client_addr,
	                                           created_at, last_seen_at, idle_timeout, expires_at)
	             SELECT $1, tenant_id, id, scopes, $4, $5, $6, $6, $7, $8 FROM k RETURNING 1)
	SELECT k.prefix, k.description FROM k, ins`

// sessionColumns are what a lookup returns, with the key joined in.
const sessionColumns = `cs.tenant_id, cs.api_key_id, cs.scopes, cs.csrf_hash, cs.expires_at, k.prefix, k.description`

// sessionLive holds of a session row cs joined to its key k that is live at $2.
const sessionLive = `cs.id_hash = $1 AND k.id = cs.api_key_id AND k.revoked_at IS NULL
	AND cs.expires_at > $2 AND cs.last_seen_at + cs.idle_timeout > $2`

// ConsoleSession returns the live session of secret, as an actor of the
// request requestID from clientAddr; with touch the request pushes the idle
// timeout back. An unknown, ended or tampered session, or one whose API key
// has been revoked, returns a KindUnauthenticated error.
func (s *Service) ConsoleSession(ctx context.Context, secret, requestID, clientAddr string, touch bool) (vault.ConsoleSession, error) {
	if !strings.HasPrefix(secret, sessionPrefix) {
		return vault.ConsoleSession{}, sessionInvalid()
	}
	q := `SELECT ` + sessionColumns + ` FROM console_sessions cs, api_keys k WHERE ` + sessionLive
	if touch {
		q = `UPDATE console_sessions cs SET last_seen_at = $2 FROM api_keys k WHERE ` + sessionLive +
			` RETURNING ` + sessionColumns
	}
	sess := vault.ConsoleSession{Actor: vault.Actor{RequestID: requestID, ClientAddr: clientAddr}}
	var scopes []string
	var csrfHash []byte
	err := s.db.QueryRow(ctx, q, sessionHash(secret), s.clock()).Scan(&sess.Actor.TenantID, &sess.Actor.APIKeyID,
		&scopes, &csrfHash, &sess.ExpiresAt, &sess.KeyPrefix, &sess.KeyDescription)
	if err == pgx.ErrNoRows {
		return vault.ConsoleSession{}, sessionInvalid()
	}
	if err != nil {
		return vault.ConsoleSession{}, dbError(err, "console session")
	}
	sess.CSRFToken, sess.ExpiresAt = sessionCSRF(secret), sess.ExpiresAt.UTC()
	if subtle.ConstantTimeCompare(sessionHash(sess.CSRFToken), csrfHash) != 1 {
		return vault.ConsoleSession{}, sessionInvalid()
	}
	for _, sc := range scopes {
		sess.Actor.Scopes = append(sess.Actor.Scopes, vault.Scope(sc))
	}
	return sess, nil
}

func sessionInvalid() error {
	return vault.Errorf(vault.KindUnauthenticated, vault.CodeSessionInvalid, "sign in to the console")
}

// EndConsoleSession signs the session of secret out and audits it as a.
// Ending an unknown session is not an error. It returns a domain error when
// the database fails.
func (s *Service) EndConsoleSession(ctx context.Context, a vault.Actor, secret string) error {
	return s.inTx(ctx, "console session", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM console_sessions WHERE id_hash = $1`, sessionHash(secret))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionConsoleSignOut, uuid.Nil, nil))
	})
}

// PruneConsoleSessions deletes every ended session and returns how many it
// deleted, or a domain error when the database fails.
func (s *Service) PruneConsoleSessions(ctx context.Context) (int64, error) {
	n, err := pruneSessions(ctx, s.db, s.clock())
	return n, dbError(err, "console session")
}

func pruneSessions(ctx context.Context, q querier, now time.Time) (int64, error) {
	tag, err := q.Exec(ctx, `DELETE FROM console_sessions
		WHERE expires_at <= $1 OR last_seen_at + idle_timeout <= $1`, now)
	return tag.RowsAffected(), err
}

// endKeySessions ends every console session of the API key id.
func endKeySessions(ctx context.Context, q querier, id uuid.UUID) error {
	_, err := q.Exec(ctx, `DELETE FROM console_sessions WHERE api_key_id = $1`, id)
	return err
}
