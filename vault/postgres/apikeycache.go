package postgres

import (
	"crypto/subtle"
	"sync"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// apiKeyCacheTTL is how long an authenticated API key's row serves from
// memory before the database is asked again. It bounds how long a key
// revoked by another process keeps working here; a revocation through this
// Service (RevokeAPIKey, DestroyTenant, an import job ending) takes effect
// at once.
const apiKeyCacheTTL = time.Second

// apiKeyCacheMax bounds the cache; when full it starts over.
const apiKeyCacheMax = 10_000

// apiKeyCache remembers the rows of recently authenticated, unrevoked API
// keys by prefix, so a busy key costs one database read per second instead
// of one per request. It holds only what the database holds: the secret's
// SHA-256, never the secret. The zero value is ready to use.
type apiKeyCache struct {
	mu   sync.Mutex
	keys map[string]cachedAPIKey
}

// cachedAPIKey is an api_keys row as Authenticate needs it.
type cachedAPIKey struct {
	id, tenantID uuid.UUID
	hash         []byte
	scopes       []vault.Scope
	loaded       time.Time  // monotonic: when it was read from the database
	expiresAt    *time.Time // when it stops authenticating; nil for never
	lastUsed     time.Time  // its last_used_at as last read or written here
}

// expired reports whether k has stopped authenticating at now (the
// service clock).
func (k cachedAPIKey) expired(now time.Time) bool {
	return k.expiresAt != nil && !now.Before(*k.expiresAt)
}

// lookup returns the cached key of prefix when it was loaded less than
// apiKeyCacheTTL ago and hash matches; a mismatch or a stale entry
// returns false, so the caller asks the database (and audits a failure).
func (c *apiKeyCache) lookup(prefix string, hash []byte) (cachedAPIKey, bool) {
	c.mu.Lock()
	k, ok := c.keys[prefix]
	c.mu.Unlock()
	if !ok || time.Since(k.loaded) >= apiKeyCacheTTL || subtle.ConstantTimeCompare(k.hash, hash) != 1 {
		return cachedAPIKey{}, false
	}
	return k, true
}

// store remembers a valid, unrevoked key read from the database at loaded.
func (c *apiKeyCache) store(prefix string, k cachedAPIKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil || len(c.keys) >= apiKeyCacheMax {
		c.keys = make(map[string]cachedAPIKey)
	}
	c.keys[prefix] = k
}

// claimUse reports whether the use at now of the key of prefix should be
// written, that is whether its last use known here is at least every old,
// and if so records now as its last use, so that concurrent requests do
// not write it again. An entry that is not cached is not written.
func (c *apiKeyCache) claimUse(prefix string, now time.Time, every time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[prefix]
	if !ok || now.Sub(k.lastUsed) < every {
		return false
	}
	k.lastUsed = now
	c.keys[prefix] = k
	return true
}

// forget drops the key with id, after its revocation committed.
func (c *apiKeyCache) forget(id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for prefix, k := range c.keys {
		if k.id == id {
			delete(c.keys, prefix)
		}
	}
}

// forgetTenant drops every key of tenantID, after they were revoked in bulk.
func (c *apiKeyCache) forgetTenant(tenantID uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for prefix, k := range c.keys {
		if k.tenantID == tenantID {
			delete(c.keys, prefix)
		}
	}
}
