package vault

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
)

// tenantKeys is a tenant's unwrapped keysets, ready to seal, open and
// fingerprint. It never leaves the vault package.
type tenantKeys struct {
	sealer *crypto.Sealer
	fp     *crypto.Fingerprinter
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

// forget drops a tenant's cached keys.
func (k *keyring) forget(tenantID uuid.UUID) {
	k.mu.Lock()
	delete(k.cache, tenantID)
	k.mu.Unlock()
}

// load reads both wrapped keysets of a tenant and unwraps them with the KEK.
func (k *keyring) load(ctx context.Context, tenantID uuid.UUID) (*tenantKeys, error) {
	rows, err := k.db.Query(ctx,
		`SELECT purpose, wrapped FROM tenant_keysets WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, dbError(err, "tenant")
	}
	wrapped := map[crypto.Purpose][]byte{}
	for rows.Next() {
		var purpose string
		var w []byte
		if err := rows.Scan(&purpose, &w); err != nil {
			return nil, dbError(err, "tenant")
		}
		wrapped[crypto.Purpose(purpose)] = w
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "tenant")
	}
	return k.unwrap(tenantID, wrapped)
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
	return &tenantKeys{sealer: sealer, fp: fp}, nil
}

func keyError(tenantID uuid.UUID, err error) error {
	return &Error{Kind: KindUnavailable, Code: "keys_unavailable",
		Message: "the tenant's keys cannot be loaded; retry later",
		Err:     fmt.Errorf("unwrap keysets of tenant %s: %w", tenantID, err)}
}
