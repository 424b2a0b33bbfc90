package vault

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

// tenantKeys is a tenant's unwrapped keysets, ready to seal, open and
// fingerprint. It never leaves the vault package.
type tenantKeys struct {
	sealer  *crypto.Sealer
	fp      *crypto.Fingerprinter
	data    *keyset.Handle // for status and rotation; never leaves the package
	version int64          // sum of the keysets' versions when loaded
}

// keyring caches tenant keys in memory so the root KEK is called once per
// tenant keyset load, never per card.
type keyring struct {
	db  *pgxpool.Pool
	kek tink.AEAD

	mu    sync.RWMutex
	cache map[uuid.UUID]*tenantKeys
}

func newKeyring(db *pgxpool.Pool, kek tink.AEAD) *keyring {
	return &keyring{db: db, kek: kek, cache: make(map[uuid.UUID]*tenantKeys)}
}

// get returns the tenant's keys, loading and unwrapping them on first use.
// It returns a KindNotFound error for a tenant without keysets.
func (k *keyring) get(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	k.mu.RLock()
	tk, ok := k.cache[tenantID]
	k.mu.RUnlock()
	if ok {
		return tk, nil
	}
	tk, err := k.load(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.cache[tenantID] = tk
	k.mu.Unlock()
	return tk, nil
}

// fresh returns the tenant's keys reloaded from the database, replacing the
// cached ones: used when a ciphertext names a key the cache does not know.
func (k *keyring) fresh(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	k.forget(tenantID)
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
		}
	}
	return nil
}

// forget drops a tenant's cached keys.
func (k *keyring) forget(tenantID uuid.UUID) {
	k.mu.Lock()
	delete(k.cache, tenantID)
	k.mu.Unlock()
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

// unwrap turns wrapped keysets into tenantKeys. A keyset the KEK cannot open
// is an internal error: the vault never falls back to anything weaker.
func (k *keyring) unwrap(tenantID uuid.UUID, wrapped map[crypto.Purpose][]byte) (*tenantKeys, error) {
	if wrapped[crypto.PurposeData] == nil || wrapped[crypto.PurposeFingerprint] == nil {
		return nil, Errorf(KindNotFound, "resource_missing", "no such tenant")
	}
	dh, err := crypto.UnwrapKeyset(wrapped[crypto.PurposeData], k.kek, tenantID.String(), crypto.PurposeData)
	if err != nil {
		return nil, keyError(tenantID, err)
	}
	fh, err := crypto.UnwrapKeyset(wrapped[crypto.PurposeFingerprint], k.kek, tenantID.String(), crypto.PurposeFingerprint)
	if err != nil {
		return nil, keyError(tenantID, err)
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

func keyError(tenantID uuid.UUID, err error) error {
	return &Error{Kind: KindUnavailable, Code: "keys_unavailable",
		Message: "the tenant's keys cannot be loaded; retry later",
		Err:     fmt.Errorf("unwrap keysets of tenant %s: %w", tenantID, err)}
}
