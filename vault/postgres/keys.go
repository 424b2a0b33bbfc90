package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
)

// keysetEdit changes an unwrapped keyset and says what it did for the audit
// trail and the key-version table.
type keysetEdit func(h *keyset.Handle) (*keyset.Handle, keyChange, error)

// keyChange is what one keyset edit did to one key version.
type keyChange struct {
	action vault.Action
	keyID  uint32
	state  crypto.KeyState // the key's new state
}

// editKeyset applies edit to a tenant's keyset inside one transaction: lock
// the row, unwrap, edit, re-wrap, bump the version (so every replica reloads
// it), record the key version's new state and audit. It returns the new
// key id's change.
func (s *Service) editKeyset(ctx context.Context, a vault.Actor, purpose crypto.Purpose, edit keysetEdit) (keyChange, error) {
	var ch keyChange
	err := s.inTx(ctx, "tenant", func(tx pgx.Tx) error {
		var wrapped []byte
		if err := tx.QueryRow(ctx, `SELECT wrapped FROM tenant_keysets WHERE tenant_id = $1 AND purpose = $2 FOR UPDATE`,
			a.TenantID, string(purpose)).Scan(&wrapped); err != nil {
			return err
		}
		h, err := crypto.UnwrapKeyset(wrapped, s.keys.kek, a.TenantID.String(), purpose)
		if err != nil {
			return keyError(a.TenantID, err)
		}
		h, ch, err = edit(h)
		if err != nil {
			return err
		}
		if wrapped, err = crypto.WrapKeyset(h, s.keys.kek, a.TenantID.String(), purpose); err != nil {
			return keyError(a.TenantID, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant_keysets SET wrapped = $3, version = version + 1, updated_at = $4
			WHERE tenant_id = $1 AND purpose = $2`, a.TenantID, string(purpose), wrapped, s.clock()); err != nil {
			return err
		}
		if err := s.recordKeyState(ctx, tx, a.TenantID, purpose, ch); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, ch.action, uuid.Nil,
			map[string]any{"purpose": string(purpose), "key_id": ch.keyID, "state": string(ch.state)}))
	})
	if err == nil {
		s.keys.forget(a.TenantID)
	}
	return ch, err
}

// recordKeyState upserts a key version's state and stamps the time of the
// transition; a promotion demotes the previous primary to active. A data
// key that may seal (primary, active) gets its tenant_sealing_keys row; one
// that may not any more loses it (releaseSealingKey), or the error says why
// it cannot.
func (s *Service) recordKeyState(ctx context.Context, q querier, tenantID uuid.UUID, purpose crypto.Purpose, ch keyChange) error {
	now := s.clock()
	if ch.state == crypto.KeyPrimary {
		if _, err := q.Exec(ctx, `UPDATE tenant_key_versions SET state = 'active'
			WHERE tenant_id = $1 AND purpose = $2 AND state = 'primary'`, tenantID, string(purpose)); err != nil {
			return err
		}
	}
	_, err := q.Exec(ctx, `
		INSERT INTO tenant_key_versions (tenant_id, purpose, key_id, state, created_at, promoted_at)
		VALUES ($1, $2, $3, $4::text, $5::timestamptz, CASE WHEN $4::text = 'primary' THEN $5::timestamptz END)
		ON CONFLICT (tenant_id, purpose, key_id) DO UPDATE SET state = $4::text,
			promoted_at  = CASE WHEN $4::text = 'primary'   THEN $5::timestamptz ELSE tenant_key_versions.promoted_at END,
			disabled_at  = CASE WHEN $4::text = 'disabled'  THEN $5::timestamptz ELSE tenant_key_versions.disabled_at END,
			destroyed_at = CASE WHEN $4::text = 'destroyed' THEN $5::timestamptz ELSE tenant_key_versions.destroyed_at END`,
		tenantID, string(purpose), int64(ch.keyID), string(ch.state), now)
	if err != nil || purpose != crypto.PurposeData {
		return err
	}
	if ch.state == crypto.KeyPrimary || ch.state == crypto.KeyActive {
		_, err = q.Exec(ctx, `INSERT INTO tenant_sealing_keys (tenant_id, key_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			tenantID, int64(ch.keyID))
		return err
	}
	return releaseSealingKey(ctx, q, tenantID, ch.keyID)
}

// releaseSealingKey stops keyID from sealing anything more of the tenant,
// within the caller's transaction: it deletes the key's tenant_sealing_keys
// row, which waits for the writers under way that hold it (every writer of a
// sealed row locks that row in its own transaction, see migration
// 008_sealing_keys.sql) and which is refused while a token (a trigger,
// migration 026) or the webhook secret (a foreign key) still names the key;
// then, with no writer able to use the key any more, it counts the webhook
// events and import credentials still under it. It returns a KindConflict error (key_in_use) when any row
// still needs the key, so the whole retire rolls back.
func releaseSealingKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) error {
	_, err := q.Exec(ctx, `DELETE FROM tenant_sealing_keys WHERE tenant_id = $1 AND key_id = $2`, tenantID, int64(keyID))
	if isSealingKeyViolation(err) {
		return keyInUse(keyID, "tokens, replaced card versions, stored idempotent answers, the webhook secret or forwarding records")
	}
	if err != nil {
		return err
	}
	hooks, err := webhookRowsUnderKey(ctx, q, tenantID, keyID)
	if err != nil {
		return err
	}
	imports, err := importCredentialsUnderKey(ctx, q, tenantID, keyID)
	if err != nil {
		return err
	}
	exports, err := exportHeadersUnderKey(ctx, q, tenantID, keyID)
	if err != nil {
		return err
	}
	if hooks+imports+exports > 0 {
		return keyInUse(keyID, "webhook events or an import's credentials")
	}
	return nil
}

// keyInUse is the conflict of a retire that found rows written under the key
// after the re-encryption job had passed them (a request that sealed with
// the key before the rotation and committed after it).
func keyInUse(keyID uint32, what string) *vault.Error {
	return vault.Errorf(vault.KindConflict, vault.CodeKeyInUse,
		"rows still under key %d (%s written since the last re-encryption): re-run reencrypt (cardvault keys reencrypt), then retire again",
		keyID, what)
}

// isSealingKeyViolation reports whether err is PostgreSQL refusing a row
// sealed under a data key that may no longer seal (a foreign key or trigger
// named *_sealing_key, SQLSTATE 23503): on a write, the writer's keys are
// stale and it must seal again with the current primary; on a retire, a row
// still names the key.
func isSealingKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503" && strings.HasSuffix(pgErr.ConstraintName, "_sealing_key")
}

// RotateDataKey rotates the tenant's data key in Tink's order: add a fresh
// AES-256-GCM key (every replica can then decrypt with it), wait propagate
// for every replica to reload the keyset, promote it to primary, and wait
// again so that every replica encrypts with it when this returns. Old keys
// keep decrypting. One rotation per tenant runs at a time, across replicas:
// another answers a KindConflict error (rotation_in_progress) at once. It
// returns the new key id, or a domain error.
func (s *Service) RotateDataKey(ctx context.Context, a vault.Actor, propagate time.Duration) (uint32, error) {
	unlock, err := s.lockRotation(ctx, a.TenantID)
	if err != nil {
		return 0, err
	}
	defer unlock()
	return s.rotateDataKey(ctx, a, propagate)
}

// rotationLockClass is the first key of the advisory locks that keep a
// tenant's rotations one at a time; the second is a hash of the tenant id.
const rotationLockClass = 0x6b657972 // "keyr"

// lockRotation takes the tenant's rotation lock, a session advisory lock on
// a connection held for the rotation, so that one rotation per tenant runs
// at a time across every replica (a dead process's lock goes with its
// session). It returns a KindConflict error (rotation_in_progress) when
// another rotation holds it, and the unlock to call when done.
func (s *Service) lockRotation(ctx context.Context, tenantID uuid.UUID) (func(), error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return nil, dbError(err, "key rotation")
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, rotationLockClass, tenantID.String()).Scan(&ok); err != nil {
		conn.Release()
		return nil, dbError(err, "key rotation")
	}
	if !ok {
		conn.Release()
		return nil, &vault.Error{Kind: vault.KindConflict, Code: vault.CodeRotationInProgress,
			Message: "a key rotation of this tenant (its data or fingerprint key) is already running; retry once it has finished"}
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, rotationLockClass, tenantID.String()); err != nil {
			conn.Conn().Close(uctx) //nolint:errcheck // closing the session frees its lock
		}
		conn.Release()
	}, nil
}

// rotateDataKey is RotateDataKey, the tenant's rotation lock held.
func (s *Service) rotateDataKey(ctx context.Context, a vault.Actor, propagate time.Duration) (uint32, error) {
	added, err := s.editKeyset(ctx, a, crypto.PurposeData, func(h *keyset.Handle) (*keyset.Handle, keyChange, error) {
		h, id, err := crypto.AddDataKey(h)
		return h, keyChange{action: vault.ActionKeyAdd, keyID: id, state: crypto.KeyActive}, err
	})
	if err != nil {
		return 0, err
	}
	if err := loop.Sleep(ctx, propagate); err != nil {
		return 0, err
	}
	_, err = s.editKeyset(ctx, a, crypto.PurposeData, func(h *keyset.Handle) (*keyset.Handle, keyChange, error) {
		h, err := crypto.PromoteKey(h, added.keyID)
		return h, keyChange{action: vault.ActionKeyPromote, keyID: added.keyID, state: crypto.KeyPrimary}, err
	})
	if err != nil {
		return 0, err
	}
	return added.keyID, loop.Sleep(ctx, propagate)
}

// sideRowsUnderKey counts the tenant's webhook rows, active import jobs and
// forwarding rows sealed with keyID.
func (s *Service) sideRowsUnderKey(ctx context.Context, tenantID uuid.UUID, keyID uint32) (int64, error) {
	hooks, err := webhookRowsUnderKey(ctx, s.db, tenantID, keyID)
	if err != nil {
		return 0, dbError(err, "webhook")
	}
	imports, err := importCredentialsUnderKey(ctx, s.db, tenantID, keyID)
	if err != nil {
		return 0, dbError(err, "import")
	}
	versions, err := versionsUnderKey(ctx, s.db, tenantID, keyID)
	if err != nil {
		return 0, dbError(err, "token version")
	}
	answers, err := idempotencyRowsUnderKey(ctx, s.db, tenantID, keyID)
	if err != nil {
		return 0, dbError(err, "idempotency key")
	}
	exports, err := exportHeadersUnderKey(ctx, s.db, tenantID, keyID)
	if err != nil {
		return 0, dbError(err, "export")
	}
	forwards, err := forwardingRowsUnderKey(ctx, s.db, tenantID, keyID)
	return hooks + imports + versions + answers + exports + forwards, dbError(err, "forwarding request")
}

// RetireDataKey disables a data key that is not primary; with destroy it
// then deletes the disabled key's material for good. It refuses the primary
// with a KindConflict error (key_is_primary) saying to rotate first, and,
// with a KindConflict error saying how many tokens still need the key, a key
// any token is sealed with; KindNotFound for an unknown key. The counts
// first taken only word the common refusal: the guarantee is the disabling
// transaction itself, which waits for the writers still sealing under the
// key and refuses (KindConflict, key_in_use) when any row, committed
// however late, still needs it (releaseSealingKey); writers that come after
// it are refused by the database and seal again with the primary key.
func (s *Service) RetireDataKey(ctx context.Context, a vault.Actor, keyID uint32, destroy bool) error {
	primary, err := s.isPrimaryDataKey(ctx, a.TenantID, keyID)
	if err != nil {
		return err
	}
	if primary {
		return keyIsPrimary(keyID)
	}
	n, err := s.tokensUnderKey(ctx, a.TenantID, keyID)
	if err != nil {
		return err
	}
	if n > 0 {
		return vault.Errorf(vault.KindConflict, vault.CodeKeyInUse,
			"key %d still protects %d tokens: re-encrypt them first (cardvault keys reencrypt)", keyID, n)
	}
	if n, err = s.sideRowsUnderKey(ctx, a.TenantID, keyID); err != nil {
		return err
	}
	if n > 0 {
		return vault.Errorf(vault.KindConflict, vault.CodeKeyInUse,
			"key %d still protects %d rows (the webhook secret, pending events, an import's credentials or forwarding records): re-encrypt first (cardvault keys reencrypt)", keyID, n)
	}
	_, err = s.editKeyset(ctx, a, crypto.PurposeData, func(h *keyset.Handle) (*keyset.Handle, keyChange, error) {
		state, ok := keyState(h, keyID)
		switch {
		case !ok:
			return nil, keyChange{}, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no key %d in the tenant's data keyset", keyID)
		case state == crypto.KeyPrimary:
			return nil, keyChange{}, keyIsPrimary(keyID)
		case destroy && state == crypto.KeyDisabled:
			h, err := crypto.DestroyKey(h, keyID)
			return h, keyChange{action: vault.ActionKeyDestroy, keyID: keyID, state: "destroyed"}, err
		case destroy:
			return nil, keyChange{}, vault.Errorf(vault.KindConflict, vault.CodeKeyNotDisabled, "key %d must be retired (disabled) before it is destroyed", keyID)
		case state == crypto.KeyDisabled:
			return nil, keyChange{}, vault.Errorf(vault.KindConflict, vault.CodeKeyAlreadyDisabled, "key %d is already disabled", keyID)
		}
		h, err := crypto.DisableKey(h, keyID)
		return h, keyChange{action: vault.ActionKeyDisable, keyID: keyID, state: crypto.KeyDisabled}, err
	})
	return err
}

// isPrimaryDataKey reports whether keyID is the tenant's primary data key,
// as recorded with every key change; an unknown key is not.
func (s *Service) isPrimaryDataKey(ctx context.Context, tenantID uuid.UUID, keyID uint32) (bool, error) {
	var primary bool
	err := s.db.QueryRow(ctx, `SELECT state = 'primary' FROM tenant_key_versions
		WHERE tenant_id = $1 AND purpose = 'data' AND key_id = $2`, tenantID, int64(keyID)).Scan(&primary)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return primary, dbError(err, "key")
}

// keyIsPrimary is the refusal to retire the primary key: every new token
// is sealed with it, so another key must become primary first.
func keyIsPrimary(keyID uint32) *vault.Error {
	return vault.Errorf(vault.KindConflict, vault.CodeKeyIsPrimary,
		"key %d is the primary: rotate first (cardvault keys rotate), then re-encrypt and retire it", keyID)
}

// keyState returns the state of keyID in h and whether it is there.
func keyState(h *keyset.Handle, keyID uint32) (crypto.KeyState, bool) {
	for _, k := range crypto.Keys(h) {
		if k.ID == keyID {
			return k.State, true
		}
	}
	return "", false
}

// tokensUnderKey counts the tenant's tokens sealed with keyID.
func (s *Service) tokensUnderKey(ctx context.Context, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE tenant_id = $1 AND key_id = $2`,
		tenantID, int64(keyID)).Scan(&n)
	return n, dbError(err, "token")
}

// KeyStatus reports every data key version of the tenant with the tokens
// it protects, against cryptoperiod. It returns a domain error when the
// keys or the database cannot be read.
func (s *Service) KeyStatus(ctx context.Context, tenantID uuid.UUID, cryptoperiod time.Duration) (vault.TenantKeyStatus, error) {
	tk, err := s.keys.fresh(ctx, tenantID)
	if err != nil {
		return vault.TenantKeyStatus{}, err
	}
	st := vault.TenantKeyStatus{TenantID: tenantID, FingerprintKeyID: tk.fp.KeyID()}
	recorded, err := s.keyVersions(ctx, tenantID)
	if err != nil {
		return st, err
	}
	counts, err := s.tokenCountsByKey(ctx, tenantID)
	if err != nil {
		return st, err
	}
	live := map[uint32]bool{}
	for _, k := range crypto.Keys(tk.data) {
		live[k.ID] = true
		v := recorded[k.ID]
		v.KeyID, v.State, v.Tokens = k.ID, string(k.State), counts[k.ID]
		if !v.CreatedAt.IsZero() {
			age := s.clock().Sub(v.CreatedAt)
			v.AgeDays, v.Overdue = int(age.Hours()/24), k.State != crypto.KeyDisabled && age > cryptoperiod
		}
		v.NearLimit = v.Encryptions >= vault.EncryptionWarning
		st.Keys = append(st.Keys, v)
	}
	for id, v := range recorded {
		if !live[id] {
			v.State = "destroyed"
			st.Keys = append(st.Keys, v)
		}
	}
	return st, nil
}

// KeyReport returns the key status of the given tenants (every tenant when
// ids is empty) with the redacted root KEK URI, and audits the read for
// each tenant as by (whose TenantID is replaced by each tenant's). It
// returns a domain error when a tenant's keys cannot be read.
func (s *Service) KeyReport(ctx context.Context, by vault.Actor, ids []uuid.UUID, kekURI string, cryptoperiod time.Duration) (vault.KeyReport, error) {
	r := vault.KeyReport{RootKEKURI: crypto.RedactKEKURI(kekURI), CryptoperiodDays: int(cryptoperiod.Hours() / 24), Tenants: []vault.TenantKeyStatus{}}
	if len(ids) == 0 {
		var err error
		if ids, err = s.TenantIDs(ctx); err != nil {
			return r, err
		}
	}
	for _, id := range ids {
		st, err := s.KeyStatus(ctx, id, cryptoperiod)
		if err != nil {
			return r, err
		}
		by.TenantID = id
		if err := s.insertAudit(ctx, s.db, s.event(by, vault.ActionKeyStatus, uuid.Nil, nil)); err != nil {
			return r, dbError(err, "audit event")
		}
		r.Tenants = append(r.Tenants, st)
	}
	return r, nil
}

// keyVersions reads the recorded data key versions of a tenant.
func (s *Service) keyVersions(ctx context.Context, tenantID uuid.UUID) (map[uint32]vault.KeyVersion, error) {
	rows, err := s.db.Query(ctx, `SELECT key_id, created_at, encryptions FROM tenant_key_versions
		WHERE tenant_id = $1 AND purpose = 'data'`, tenantID)
	if err != nil {
		return nil, dbError(err, "tenant")
	}
	defer rows.Close()
	out := map[uint32]vault.KeyVersion{}
	for rows.Next() {
		var id int64
		var v vault.KeyVersion
		if err := rows.Scan(&id, &v.CreatedAt, &v.Encryptions); err != nil {
			return nil, dbError(err, "tenant")
		}
		v.KeyID, v.CreatedAt = uint32(id), v.CreatedAt.UTC()
		out[v.KeyID] = v
	}
	return out, dbError(rows.Err(), "tenant")
}

// tokenCountsByKey counts the tenant's tokens per sealing key.
func (s *Service) tokenCountsByKey(ctx context.Context, tenantID uuid.UUID) (map[uint32]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT key_id, count(*) FROM tokens WHERE tenant_id = $1 GROUP BY key_id`, tenantID)
	if err != nil {
		return nil, dbError(err, "token")
	}
	defer rows.Close()
	out := map[uint32]int64{}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, dbError(err, "token")
		}
		out[uint32(id)] = n
	}
	return out, dbError(rows.Err(), "token")
}

// TenantIDs returns the ids of every tenant that has not been destroyed,
// oldest first.
func (s *Service) TenantIDs(ctx context.Context) ([]uuid.UUID, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM tenants WHERE destroyed_at IS NULL ORDER BY created_at, id`)
	if err != nil {
		return nil, dbError(err, "tenant")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, dbError(err, "tenant")
}
