package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The PRF inputs of idempotency hashes start with these, which separates
// them from each other and from PAN fingerprints made with the same tenant
// PRF keyset (a PAN fingerprint's input is digits only).
const (
	idempotencyKeyDomain     = "cardvault/idempotency-key/v1\x00"
	idempotencyRequestDomain = "cardvault/idempotency-request/v1\x00"
)

// BeginIdempotent claims r's key for the actor's tenant. It returns a claim
// when the request should run (the key is new, expired, or held by a request
// whose lock ran out), or the stored answer when it should be replayed.
// Errors: KindBadRequest for a malformed key, KindIdempotency when the key
// was used for a different request, KindConflict (idempotency_key_in_use)
// while another request holds it, KindUnavailable when the database is down.
func (s *Service) BeginIdempotent(ctx context.Context, a vault.Actor, r vault.IdempotentRequest) (vault.IdempotencyClaim, *vault.StoredResponse, error) {
	if err := vault.CheckIdempotencyKey(r.Key); err != nil {
		return vault.IdempotencyClaim{}, nil, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.IdempotencyClaim{}, nil, err
	}
	h, err := s.idempotencyHashes(ctx, tk, a.TenantID, r)
	if err != nil {
		return vault.IdempotencyClaim{}, nil, err
	}
	c := vault.IdempotencyClaim{TenantID: a.TenantID, KeyHash: h.key, Lock: uuid.New()}
	// A row can vanish between the claim attempt and the read (released or
	// swept); then the claim is simply tried again.
	for range 3 {
		claimed, err := s.claimIdempotencyKey(ctx, a, c, h.request, h.prfKeyID)
		if err != nil {
			return vault.IdempotencyClaim{}, nil, err
		}
		if claimed {
			return c, nil, nil
		}
		stored, err := s.storedIdempotent(ctx, tk, c, h.request, h.prfKeyID)
		if !errors.Is(err, pgx.ErrNoRows) {
			return vault.IdempotencyClaim{}, stored, dbError(err, "idempotency key")
		}
	}
	return vault.IdempotencyClaim{}, nil, inUse()
}

// idempotencyHashes are the PRF hashes naming an Idempotency-Key and its
// request, and the PRF key that made them.
type idempotencyHashes struct {
	key, request []byte
	prfKeyID     uint32
}

// idempotencyHashes returns r's hashes under the primary PRF key or, while
// the fingerprint keyset is being rotated, under the older key that made
// a live row for r's key: a retry that began before the rotation still
// finds its first answer. It returns a domain error when the PRF or the
// database fails.
func (s *Service) idempotencyHashes(ctx context.Context, tk *tenantKeys, tenantID uuid.UUID, r vault.IdempotentRequest) (idempotencyHashes, error) {
	keyInput := append([]byte(idempotencyKeyDomain), r.Key...)
	for _, id := range tk.fp.OtherKeyIDs() {
		older, err := tk.fp.SumWith(id, keyInput)
		if err != nil {
			return idempotencyHashes{}, vault.Internal(err)
		}
		var live bool
		if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM idempotency_keys
			WHERE tenant_id = $1 AND key_hash = $2 AND fingerprint_key_id = $3 AND expires_at > $4)`,
			tenantID, older, int64(id), s.clock()).Scan(&live); err != nil {
			return idempotencyHashes{}, dbError(err, "idempotency key")
		}
		if live {
			req, err := tk.fp.SumWith(id, idempotencyInput(r))
			if err != nil {
				return idempotencyHashes{}, vault.Internal(err)
			}
			return idempotencyHashes{key: older, request: req, prfKeyID: id}, nil
		}
	}
	key, err := tk.fp.Sum(keyInput)
	if err != nil {
		return idempotencyHashes{}, vault.Internal(err)
	}
	req, err := tk.fp.Sum(idempotencyInput(r))
	if err != nil {
		return idempotencyHashes{}, vault.Internal(err)
	}
	return idempotencyHashes{key: key, request: req, prfKeyID: tk.fp.KeyID()}, nil
}

// idempotencyInput is what the fingerprint covers: method, path and body,
// the first two length-prefixed so that no two requests share an input.
func idempotencyInput(r vault.IdempotentRequest) []byte {
	b := make([]byte, 0, len(idempotencyRequestDomain)+len(r.Method)+len(r.Path)+len(r.Body)+2*binary.MaxVarintLen64)
	b = append(b, idempotencyRequestDomain...)
	b = binary.AppendUvarint(b, uint64(len(r.Method)))
	b = append(b, r.Method...)
	b = binary.AppendUvarint(b, uint64(len(r.Path)))
	b = append(b, r.Path...)
	return append(b, r.Body...)
}

// claimIdempotencyKey inserts the key as running, or takes over a row that
// expired or whose holder stopped renewing it (for the same request only).
// It reports whether the claim is now c's.
//
// The claim commits without waiting for its WAL flush (synchronous_commit
// off for this one statement): it is visible to other requests at once, and
// whatever the request then commits durably, or FinishIdempotent, flushes
// the WAL past it. A crash can lose only a claim nothing durable followed,
// and a retry then rightly runs. This saves one disk flush per request.
func (s *Service) claimIdempotencyKey(ctx context.Context, a vault.Actor, c vault.IdempotencyClaim, fp []byte, fpKeyID uint32) (bool, error) {
	now := s.clock()
	tag, err := s.db.Exec(ctx, `
		INSERT INTO idempotency_keys AS k (tenant_id, key_hash, api_key_id, fingerprint, fingerprint_key_id,
		                                   state, lock_id, locked_at, created_at, expires_at)
		SELECT $1::uuid, $2::bytea, $3::uuid, $4::bytea, $5::bigint, 'running', $6::uuid,
		       $7::timestamptz, $7::timestamptz, $8::timestamptz
		FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
		ON CONFLICT (tenant_id, key_hash) DO UPDATE SET
			api_key_id = EXCLUDED.api_key_id, fingerprint = EXCLUDED.fingerprint,
			fingerprint_key_id = EXCLUDED.fingerprint_key_id, state = 'running', lock_id = EXCLUDED.lock_id,
			locked_at = EXCLUDED.locked_at, response_status = NULL, response_body = NULL,
			response_ct = NULL, key_id = NULL,
			created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
		WHERE k.expires_at <= EXCLUDED.created_at
		   OR (k.state = 'running' AND k.locked_at <= $9
		       AND k.fingerprint = EXCLUDED.fingerprint AND k.fingerprint_key_id = EXCLUDED.fingerprint_key_id)`,
		c.TenantID, c.KeyHash, nullUUID(a.APIKeyID), fp, int64(fpKeyID), c.Lock, now, now.Add(vault.IdempotencyTTL),
		now.Add(-vault.IdempotencyLockTimeout))
	if err != nil {
		return false, dbError(err, "idempotency key")
	}
	return tag.RowsAffected() == 1, nil
}

// storedIdempotent reads the row that kept c's key from being claimed and
// decides: the stored answer (opened with tk), a mismatch, or a key in use.
// It returns pgx.ErrNoRows when the row is gone.
func (s *Service) storedIdempotent(ctx context.Context, tk *tenantKeys, c vault.IdempotencyClaim, fp []byte, fpKeyID uint32) (*vault.StoredResponse, error) {
	var gotFP, body, ct []byte
	var gotKeyID int64
	var state string
	var status *int16
	err := s.db.QueryRow(ctx, `
		SELECT fingerprint, fingerprint_key_id, state, response_status, response_body, response_ct
		FROM idempotency_keys WHERE tenant_id = $1 AND key_hash = $2 AND expires_at > $3`,
		c.TenantID, c.KeyHash, s.clock()).Scan(&gotFP, &gotKeyID, &state, &status, &body, &ct)
	switch {
	case err != nil:
		return nil, err
	case !bytes.Equal(gotFP, fp) || gotKeyID != int64(fpKeyID):
		return nil, &vault.Error{Kind: vault.KindIdempotency, Code: vault.CodeIdempotencyError, Param: "Idempotency-Key",
			Message: "this Idempotency-Key was already used with a different request; use a new key for a new request"}
	case state != "done" || status == nil:
		return nil, inUse()
	}
	if ct != nil {
		if body, err = s.openAnswer(tk, c, ct); err != nil {
			return nil, err
		}
	}
	return &vault.StoredResponse{Status: int(*status), Body: body}, nil
}

// answerAD binds a sealed stored answer to its tenant and key hash.
func answerAD(tenantID uuid.UUID, keyHash []byte) []byte {
	return crypto.FieldAD(tenantID.String(), hex.EncodeToString(keyHash), "idempotency_response")
}

// openAnswer opens a sealed stored answer, with keys reloaded once when tk
// does not hold the key that sealed it (rotated by another replica).
func (s *Service) openAnswer(tk *tenantKeys, c vault.IdempotencyClaim, ct []byte) ([]byte, error) {
	if !tk.holds(crypto.Ciphertext(ct)) {
		fresh, err := s.newerKeys(c.TenantID, tk)
		if err != nil {
			return nil, err
		}
		tk = fresh
	}
	pt, err := tk.sealer.Open(crypto.Ciphertext(ct), answerAD(c.TenantID, c.KeyHash))
	if err != nil {
		return nil, vault.Internal(errors.New("a stored idempotent answer does not open"))
	}
	return pt, nil
}

func inUse() *vault.Error {
	return &vault.Error{Kind: vault.KindConflict, Code: vault.CodeIdempotencyKeyInUse, Param: "Idempotency-Key",
		Message: "another request with this Idempotency-Key is still running; retry after it finishes"}
}

// HoldIdempotent renews c's lock every third of IdempotencyLockTimeout until
// the returned stop is called, so that a long request keeps its key. Renewal
// failures are logged; the lock then lapses as if the process had died.
func (s *Service) HoldIdempotent(ctx context.Context, c vault.IdempotencyClaim) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(vault.IdempotencyLockTimeout / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := s.db.Exec(ctx, `UPDATE idempotency_keys SET locked_at = $4
				WHERE tenant_id = $1 AND key_hash = $2 AND lock_id = $3 AND state = 'running'`,
				c.TenantID, c.KeyHash, c.Lock, s.clock()); err != nil && ctx.Err() == nil {
				s.log.Warn("renewing an idempotency key lock", "error", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// FinishIdempotent ends c by keeping res for replay, sealed with the
// tenant's data key (a token answer holds the cardholder name), and reports
// whether it was kept. An answer is not kept, and the key is released so that a retry
// runs again, when it is a 5xx, larger than MaxStoredResponse, or holds
// anything that looks like a card number (which no stored answer may). It
// returns false without error when c's lock was taken over meanwhile, and a
// domain error when the database fails.
func (s *Service) FinishIdempotent(ctx context.Context, c vault.IdempotencyClaim, res vault.StoredResponse) (bool, error) {
	if reason := unstorable(res); reason != "" {
		if reason == "card_data" {
			s.log.Warn("an answer holding card-like data was not stored for idempotent replay", "status", res.Status)
		}
		return false, s.ReleaseIdempotent(ctx, c)
	}
	tk, err := s.keys.get(ctx, c.TenantID)
	if err != nil {
		return false, err
	}
	for attempt := 1; ; attempt++ {
		kept, err := s.storeAnswer(ctx, tk, c, res)
		switch {
		case !isSealingKeyViolation(err):
			return kept, dbError(err, "idempotency key")
		case attempt == maxSealAttempts:
			return false, keysChanging(err)
		}
		// tk's primary key was retired meanwhile: seal again with the current keys.
		if tk, err = s.newerKeys(c.TenantID, tk); err != nil {
			return false, err
		}
	}
}

// storeAnswer seals res's body with tk's primary data key and keeps it on
// c's row; it reports whether c still held the row.
func (s *Service) storeAnswer(ctx context.Context, tk *tenantKeys, c vault.IdempotencyClaim, res vault.StoredResponse) (bool, error) {
	keyID := tk.sealer.PrimaryKeyID()
	ct, err := tk.sealer.Seal(res.Body, answerAD(c.TenantID, c.KeyHash))
	if err != nil {
		return false, vault.Internal(err)
	}
	s.usage.add(c.TenantID, keyID)
	tag, err := s.db.Exec(ctx, `
		UPDATE idempotency_keys SET state = 'done', response_status = $4, response_ct = $5, key_id = $6
		WHERE tenant_id = $1 AND key_hash = $2 AND lock_id = $3 AND state = 'running'`,
		c.TenantID, c.KeyHash, c.Lock, res.Status, []byte(ct), int64(keyID))
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// idempotencyRowsUnderKey counts the tenant's stored answers sealed with keyID.
func idempotencyRowsUnderKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND key_id = $2`,
		tenantID, int64(keyID)).Scan(&n)
	return n, err
}

// resealAnswers re-seals the tenant's stored answers still under another
// key than tk's primary, within tx; the re-encryption job calls it. It
// returns how many it re-sealed, or the error of one that does not open.
func (s *Service) resealAnswers(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	primary := tk.sealer.PrimaryKeyID()
	rows, err := tx.Query(ctx, `SELECT key_hash, response_ct FROM idempotency_keys
		WHERE tenant_id = $1 AND key_id <> $2 FOR UPDATE`, tenantID, int64(primary))
	if err != nil {
		return 0, err
	}
	var hashes, cts [][]byte
	for rows.Next() {
		var h, ct []byte
		if err := rows.Scan(&h, &ct); err != nil {
			rows.Close()
			return 0, err
		}
		pt, err := tk.sealer.Open(crypto.Ciphertext(ct), answerAD(tenantID, h))
		if err == nil {
			ct, err = tk.sealer.Seal(pt, answerAD(tenantID, h))
		}
		if err != nil {
			rows.Close()
			return 0, vault.Internal(errors.New("a stored idempotent answer does not open"))
		}
		s.usage.add(tenantID, primary)
		hashes, cts = append(hashes, h), append(cts, ct)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE idempotency_keys k SET response_ct = v.ct, key_id = $2
		FROM unnest($3::bytea[], $4::bytea[]) AS v(h, ct) WHERE k.tenant_id = $1 AND k.key_hash = v.h`,
		tenantID, int64(primary), hashes, cts)
	return len(hashes), err
}

// unstorable returns why res may not be kept, or "".
func unstorable(res vault.StoredResponse) string {
	switch {
	case res.Status < 100 || res.Status >= 500:
		return "status"
	case len(res.Body) > vault.MaxStoredResponse:
		return "size"
	case holdsPAN(string(res.Body)):
		return "card_data"
	}
	return ""
}

// ReleaseIdempotent ends c without keeping an answer: the key is free again
// and a retry runs anew. It returns a domain error when the database fails.
func (s *Service) ReleaseIdempotent(ctx context.Context, c vault.IdempotencyClaim) error {
	_, err := s.db.Exec(ctx, `DELETE FROM idempotency_keys
		WHERE tenant_id = $1 AND key_hash = $2 AND lock_id = $3 AND state = 'running'`,
		c.TenantID, c.KeyHash, c.Lock)
	return dbError(err, "idempotency key")
}

// idempotencySweepBatch bounds how many rows one sweep statement deletes.
const idempotencySweepBatch = 1000

// PruneIdempotencyKeys deletes every idempotency key whose 24 hours have
// passed and returns how many it deleted, or a domain error when the
// database fails.
func (s *Service) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := s.db.Exec(ctx, `
			DELETE FROM idempotency_keys WHERE (tenant_id, key_hash) IN (
				SELECT tenant_id, key_hash FROM idempotency_keys WHERE expires_at <= $1
				ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			s.clock(), idempotencySweepBatch)
		if err != nil {
			return total, dbError(err, "idempotency key")
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < idempotencySweepBatch {
			return total, nil
		}
	}
}
