package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// DefaultKeyCacheTTL is how long unwrapped tenant keys serve before they are
// unwrapped again through the root KEK, when Config.KeyCacheTTL is 0.
const DefaultKeyCacheTTL = time.Hour

// keyLoadTimeout bounds one load of a tenant's keysets (database read and
// KEK unwrap), which runs on behalf of every request waiting for it.
const keyLoadTimeout = 10 * time.Second

// tenantKeys is a tenant's unwrapped keysets, ready to seal, open and
// fingerprint. It never leaves the vault package.
type tenantKeys struct {
	sealer  *crypto.Sealer
	fp      *crypto.Fingerprinter
	data    *keyset.Handle // for status and rotation; never leaves the package
	version int64          // sum of the keysets' versions when loaded
	expires time.Time      // after this the keysets are unwrapped again
}

// keyring caches tenant keys in memory so the root KEK is called once per
// tenant keyset load and cache TTL, never per card. Once a tenant's keys
// are older than the TTL they are dropped and unwrapped again; when the KEK
// cannot unwrap them then, the tenant's requests fail as unavailable until
// it can: the keys never outlive the TTL, so disabling the KEK in the KMS
// takes effect within one TTL.
type keyring struct {
	db  *pgxpool.Pool
	kek tink.AEAD
	ttl time.Duration
	now func() time.Time
	// metrics counts cache hits and misses and records whether the KEK
	// answers; nil records nothing.
	metrics *metrics.Store

	mu      sync.RWMutex
	cache   map[uuid.UUID]*tenantKeys
	loading map[uuid.UUID]*keyLoad
	gen     uint64 // bumped by forget: a load begun before it is not cached
	// mismatched holds the tenants whose last load failed with
	// kek_mismatch: the KEK works but cannot decrypt their keysets.
	mismatched map[uuid.UUID]bool
}

// keyLoad is one load of a tenant's keys that concurrent requests share,
// so an expired entry costs one KEK call, not one per waiting request.
type keyLoad struct {
	done chan struct{}
	gen  uint64
	tk   *tenantKeys
	err  error
}

func newKeyring(db *pgxpool.Pool, kek tink.AEAD, ttl time.Duration, now func() time.Time) *keyring {
	if ttl <= 0 {
		ttl = DefaultKeyCacheTTL
	}
	return &keyring{db: db, kek: kek, ttl: ttl, now: now, cache: make(map[uuid.UUID]*tenantKeys),
		loading: make(map[uuid.UUID]*keyLoad), mismatched: make(map[uuid.UUID]bool)}
}

// get returns the tenant's keys, loading and unwrapping them on first use
// and again once they are older than the TTL. It returns a KindNotFound
// error for a tenant without keysets, a KindUnavailable error
// (kek_unavailable) when the root KEK fails, and a KindMisconfigured error
// (kek_mismatch) when it works but cannot decrypt them.
func (k *keyring) get(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	k.mu.RLock()
	tk, ok := k.cache[tenantID]
	k.mu.RUnlock()
	if ok && k.now().Before(tk.expires) {
		k.metrics.KeyCacheHit()
		return tk, nil
	}
	k.metrics.KeyCacheMiss()
	return k.loadShared(ctx, tenantID)
}

// loadShared loads the tenant's keys, or waits for the load another request
// already started. Expired keys are dropped first, so they never serve
// again whatever the outcome.
func (k *keyring) loadShared(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	k.mu.Lock()
	if tk, ok := k.cache[tenantID]; ok && k.now().Before(tk.expires) {
		k.mu.Unlock()
		return tk, nil
	}
	delete(k.cache, tenantID)
	l, joined := k.loading[tenantID]
	if !joined {
		l = &keyLoad{done: make(chan struct{}), gen: k.gen}
		k.loading[tenantID] = l
	}
	k.mu.Unlock()
	if joined {
		select {
		case <-l.done:
			return l.tk, l.err
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		}
	}
	// The load serves every request waiting for it, so no one request's
	// cancellation may cut it short; it is bounded instead.
	loadCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keyLoadTimeout)
	defer cancel()
	expires := k.now().Add(k.ttl)
	l.tk, l.err = k.load(loadCtx, tenantID)
	k.mu.Lock()
	if k.loading[tenantID] == l {
		delete(k.loading, tenantID)
	}
	if l.err == nil && l.gen == k.gen {
		l.tk.expires = expires
		k.cache[tenantID] = l.tk
	}
	k.noteMismatch(tenantID, l.err)
	k.mu.Unlock()
	close(l.done)
	return l.tk, l.err
}

// fresh returns the tenant's keys reloaded from the database, replacing the
// cached ones: used when a ciphertext names a key the cache does not know.
func (k *keyring) fresh(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	k.forget(tenantID)
	return k.get(ctx, tenantID)
}

// renew returns the tenant's keys reloaded from the database when its
// keysets changed since stale was loaded (a write sealed with stale was
// refused because its key was retired, or a ciphertext names a key stale
// does not hold), and stale itself when they did not: one cheap query, so a
// row under a key that is gone for good never costs a KEK call per request.
// Only the first of the requests holding the same stale keys drops them;
// the others share its load (or the keys it cached), so a rotation costs
// each replica one root KEK call, not one per request. It returns a domain
// error when the database fails, and get's errors.
func (k *keyring) renew(ctx context.Context, tenantID uuid.UUID, stale *tenantKeys) (*tenantKeys, error) {
	var version int64
	if err := k.db.QueryRow(ctx, `SELECT coalesce(sum(version), 0)::bigint FROM tenant_keysets WHERE tenant_id = $1`,
		tenantID).Scan(&version); err != nil {
		return nil, dbError(err, "tenant")
	}
	if version == stale.version {
		return stale, nil
	}
	k.drop(tenantID, stale)
	return k.get(ctx, tenantID)
}

// refresh drops every cached tenant whose keysets changed (or vanished)
// since they were loaded, so that a rotation made by another process is
// picked up within one refresh interval. It returns a domain error when the
// database fails.
func (k *keyring) refresh(ctx context.Context) error {
	rows, err := k.db.Query(ctx, `SELECT tenant_id, sum(version)::bigint FROM tenant_keysets GROUP BY tenant_id`)
	if err != nil {
		return dbError(err, "tenant")
	}
	current := map[uuid.UUID]int64{}
	for rows.Next() {
		var id uuid.UUID
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			return dbError(err, "tenant")
		}
		current[id] = v
	}
	if err := rows.Err(); err != nil {
		return dbError(err, "tenant")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, tk := range k.cache {
		if v, ok := current[id]; !ok || v != tk.version {
			delete(k.cache, id)
			k.gen++
		}
	}
	return nil
}

// forget drops a tenant's cached keys; a load already under way is neither
// cached nor shared with later callers, which load afresh.
func (k *keyring) forget(tenantID uuid.UUID) { k.drop(tenantID, nil) }

// drop is forget, only while the cached keys are still only (when only is
// not nil), so that of many requests holding the same stale keys the first
// drops them and the rest share the reload.
func (k *keyring) drop(tenantID uuid.UUID, only *tenantKeys) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if only != nil && k.cache[tenantID] != only {
		return
	}
	delete(k.cache, tenantID)
	delete(k.loading, tenantID)
	k.gen++
}

// load reads both wrapped keysets of a tenant and unwraps them with the KEK.
func (k *keyring) load(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	rows, err := k.db.Query(ctx,
		`SELECT purpose, wrapped, version FROM tenant_keysets WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, dbError(err, "tenant")
	}
	wrapped := map[crypto.Purpose][]byte{}
	var version int64
	for rows.Next() {
		var purpose string
		var w []byte
		var v int64
		if err := rows.Scan(&purpose, &w, &v); err != nil {
			return nil, dbError(err, "tenant")
		}
		wrapped[crypto.Purpose(purpose)], version = w, version+v
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "tenant")
	}
	tk, err := k.unwrap(tenantID, wrapped)
	if err != nil {
		return nil, err
	}
	tk.version = version
	return tk, nil
}

// kekProbeAD is the associated data of the round trip that probe makes.
const kekProbeAD = "cardvault root KEK probe"

// probe encrypts and decrypts a random value with the root KEK: one round
// trip that proves the KEK is reachable and usable even before any tenant
// keyset exists. It returns a KindUnavailable error (kek_unavailable) when
// it is not.
func (k *keyring) probe() error {
	msg := make([]byte, 32)
	if _, err := rand.Read(msg); err != nil {
		return vault.Internal(err)
	}
	err := k.roundTrip(msg)
	k.metrics.KEKAvailable(err == nil)
	return err
}

// roundTrip encrypts msg with the root KEK and decrypts it again; it
// returns a KindUnavailable error (kek_unavailable) when either fails or
// the decryption differs.
func (k *keyring) roundTrip(msg []byte) error {
	ct, err := k.kek.Encrypt(msg, []byte(kekProbeAD))
	if err != nil {
		return kekUnavailable(fmt.Errorf("root KEK probe: encrypt: %w", err))
	}
	pt, err := k.kek.Decrypt(ct, []byte(kekProbeAD))
	if err != nil {
		return kekUnavailable(fmt.Errorf("root KEK probe: decrypt: %w", err))
	}
	if string(pt) != string(msg) {
		return kekUnavailable(errors.New("root KEK probe: decrypt returned another value"))
	}
	return nil
}

// unwrap turns wrapped keysets into tenantKeys. A keyset the KEK cannot open
// is an internal error: the vault never falls back to anything weaker.
func (k *keyring) unwrap(tenantID uuid.UUID, wrapped map[crypto.Purpose][]byte) (*tenantKeys, error) {
	if wrapped[crypto.PurposeData] == nil || wrapped[crypto.PurposeFingerprint] == nil {
		return nil, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such tenant")
	}
	dh, err := k.unwrapKeyset(tenantID, wrapped[crypto.PurposeData], crypto.PurposeData)
	if err != nil {
		return nil, err
	}
	fh, err := k.unwrapKeyset(tenantID, wrapped[crypto.PurposeFingerprint], crypto.PurposeFingerprint)
	if err != nil {
		return nil, err
	}
	sealer, err := crypto.NewSealer(dh)
	if err != nil {
		return nil, keyError(tenantID, err)
	}
	fp, err := crypto.NewFingerprinter(fh)
	if err != nil {
		return nil, keyError(tenantID, err)
	}
	return &tenantKeys{sealer: sealer, fp: fp, data: dh}, nil
}

// unwrapKeyset unwraps one of the tenant's keysets. When the KEK fails it
// tells a KEK that works but is not the one the keyset is wrapped by (a
// probe round trip succeeds and a second attempt fails too: kek_mismatch)
// from one that does not answer or refuses (kek_unavailable).
func (k *keyring) unwrapKeyset(tenantID uuid.UUID, wrapped []byte, purpose crypto.Purpose) (*keyset.Handle, error) {
	h, err := crypto.UnwrapKeyset(wrapped, k.kek, tenantID.String(), purpose)
	if err == nil {
		k.metrics.KEKAvailable(true)
		return h, nil
	}
	if k.probe() != nil {
		return nil, keyError(tenantID, err)
	}
	if h, err = crypto.UnwrapKeyset(wrapped, k.kek, tenantID.String(), purpose); err == nil {
		return h, nil // the first failure was passing
	}
	return nil, kekMismatch(fmt.Errorf("unwrap %s keyset of tenant %s: %w", purpose, tenantID, err))
}

// noteMismatch records whether the tenant's last load failed with
// kek_mismatch. The caller holds k.mu.
func (k *keyring) noteMismatch(tenantID uuid.UUID, err error) {
	if isKEKMismatch(err) {
		k.mismatched[tenantID] = true
		return
	}
	delete(k.mismatched, tenantID)
}

// checkMismatched loads again every tenant whose last load failed with
// kek_mismatch, so a fixed KEK is noticed without traffic. It returns a
// KindMisconfigured error (kek_mismatch) naming how many tenants the KEK
// still cannot open, another load error (such as kek_unavailable) as it
// is, or nil.
func (k *keyring) checkMismatched(ctx context.Context) error {
	k.mu.RLock()
	ids := make([]uuid.UUID, 0, len(k.mismatched))
	for id := range k.mismatched {
		ids = append(ids, id)
	}
	k.mu.RUnlock()
	n := 0
	for _, id := range ids {
		_, err := k.get(ctx, id)
		switch {
		case isKEKMismatch(err):
			n++
		case err != nil && vault.ErrorKind(err) != vault.KindNotFound:
			return err
		}
	}
	if n == 0 {
		return nil
	}
	return &vault.Error{Kind: vault.KindMisconfigured, Code: vault.CodeKEKMismatch, Message: fmt.Sprintf(
		"the configured root KEK cannot open the keys of %d tenant(s): restart with the KEK that keys rotate-root moved them to", n)}
}

func isKEKMismatch(err error) bool {
	var e *vault.Error
	return errors.As(err, &e) && e.Code == vault.CodeKEKMismatch
}

// keyError is the error of a tenant keyset the root KEK cannot unwrap (or
// wrap) because the KEK does not answer or refuses.
func keyError(tenantID uuid.UUID, err error) error {
	return kekUnavailable(fmt.Errorf("unwrap keysets of tenant %s: %w", tenantID, err))
}

// kekMismatch returns the KindMisconfigured error (code kek_mismatch) of a
// keyset the working root KEK cannot decrypt: it is wrapped by another KEK
// (or damaged). No retry helps; err is kept for the log only.
func kekMismatch(err error) *vault.Error {
	return &vault.Error{Kind: vault.KindMisconfigured, Code: vault.CodeKEKMismatch,
		Message: "the configured root KEK cannot open this tenant's keys: they are wrapped by another KEK; " +
			"the vault's operator must restart it with that KEK (the one keys rotate-root moved them to)",
		Err: err}
}

// kekUnavailable returns the KindUnavailable error (code kek_unavailable)
// of a failed root KEK call; err is kept for the log only.
func kekUnavailable(err error) *vault.Error {
	return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeKEKUnavailable,
		Message: "the root key-encryption key is unavailable, so the tenant's keys cannot be loaded; retry later",
		Err:     err}
}

// sealRefused returns err, first dropping the tenant's cached keys when err
// is the database refusing a row sealed with a retired key: this process's
// keys are stale, and the client's retry (the error is KindUnavailable)
// loads the current ones.
func (s *Service) sealRefused(tenantID uuid.UUID, err error) error {
	if isSealingKeyViolation(err) {
		s.keys.forget(tenantID)
	}
	return err
}
