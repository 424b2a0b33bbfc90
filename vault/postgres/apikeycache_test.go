package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestAuthenticateCacheKeepsRevocation proves that remembering API keys
// (apiKeyCacheTTL) does not weaken revocation or the secret check: a key
// revoked through the same Service fails at once, one revoked by another
// process fails within the cache's second, and a wrong secret for a
// remembered key still fails and is audited.
func TestAuthenticateCacheKeepsRevocation(t *testing.T) {
	ctx := context.Background()
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	other := vaulttest.NewService(t, dbURL, vaulttest.Options{}) // another replica on the same database
	pool := vaulttest.Pool(t, dbURL)

	authOK := func(t *testing.T, secret string) vault.Actor {
		t.Helper()
		a, err := svc.Authenticate(ctx, secret, "req_cache", "127.0.0.1")
		require.NoError(t, err)
		return a
	}
	failureReason := func(t *testing.T, requestID string) string {
		t.Helper()
		require.NoError(t, svc.FlushAccessFailures(ctx))
		require.NoError(t, other.FlushAccessFailures(ctx))
		var reason string
		require.NoError(t, pool.QueryRow(ctx, `SELECT detail->>'reason' FROM audit_events
			WHERE request_id = $1 AND action = 'auth.failed'`, requestID).Scan(&reason))
		return reason
	}

	t.Run("revoked through this service", func(t *testing.T) {
		_, secret := vaulttest.Tenant(t, svc)
		a := authOK(t, secret)
		authOK(t, secret) // now remembered
		_, err := svc.RevokeAPIKey(ctx, a.APIKeyID)
		require.NoError(t, err)
		_, err = svc.Authenticate(ctx, secret, "req_cache_revoked_here", "127.0.0.1")
		assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
		assert.Equal(t, "revoked_key", failureReason(t, "req_cache_revoked_here"))
	})

	t.Run("revoked by another process", func(t *testing.T) {
		_, secret := vaulttest.Tenant(t, svc)
		a := authOK(t, secret)
		_, err := other.RevokeAPIKey(ctx, a.APIKeyID)
		require.NoError(t, err)
		revokedAt := time.Now()
		for {
			_, err = svc.Authenticate(ctx, secret, "req_cache_revoked_elsewhere", "127.0.0.1")
			if err != nil || time.Since(revokedAt) > 5*time.Second {
				break
			}
			<-time.After(10 * time.Millisecond) // poll interval
		}
		assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
		assert.Less(t, time.Since(revokedAt), 2*time.Second, "a revocation elsewhere must apply within the cache's second")
	})

	t.Run("wrong secret for a remembered key", func(t *testing.T) {
		_, secret := vaulttest.Tenant(t, svc)
		authOK(t, secret)
		wrong := secret[:len(secret)-43] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		_, err := svc.Authenticate(ctx, wrong, "req_cache_wrong", "127.0.0.1")
		assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
		assert.Equal(t, "wrong_secret", failureReason(t, "req_cache_wrong"))
		assert.Equal(t, authOK(t, secret).TenantID, authOK(t, secret).TenantID, "the right secret still works")
	})
}
