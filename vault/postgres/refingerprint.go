package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
)

// RotateFingerprintKey rotates the tenant's fingerprint (PRF) keyset in
// Tink's order — add a fresh HMAC-SHA256 key, wait propagate for every
// replica to load it, promote it, wait again — and then enqueues the
// refingerprint job that recomputes every token's fingerprint under it
// (any replica's key-job worker runs it; RunOneKeyJob). One rotation per
// tenant runs at a time (rotation_in_progress otherwise, as for data keys).
// It returns the job, or a domain error.
func (s *Service) RotateFingerprintKey(ctx context.Context, a vault.Actor, propagate time.Duration) (vault.KeyJob, error) {
	unlock, err := s.lockRotation(ctx, a.TenantID)
	if err != nil {
		return vault.KeyJob{}, err
	}
	defer unlock()
	added, err := s.editKeyset(ctx, a, crypto.PurposeFingerprint, func(h *keyset.Handle) (*keyset.Handle, keyChange, error) {
		h, id, err := crypto.AddFingerprintKey(h)
		return h, keyChange{action: vault.ActionKeyAdd, keyID: id, state: crypto.KeyActive}, err
	})
	if err != nil {
		return vault.KeyJob{}, err
	}
	if err := loop.Sleep(ctx, propagate); err != nil {
		return vault.KeyJob{}, err
	}
	if _, err = s.editKeyset(ctx, a, crypto.PurposeFingerprint, func(h *keyset.Handle) (*keyset.Handle, keyChange, error) {
		h, err := crypto.PromoteKey(h, added.keyID)
		return h, keyChange{action: vault.ActionKeyPromote, keyID: added.keyID, state: crypto.KeyPrimary}, err
	}); err != nil {
		return vault.KeyJob{}, err
	}
	if err := loop.Sleep(ctx, propagate); err != nil {
		return vault.KeyJob{}, err
	}
	return s.startRefingerprint(ctx, a, added.keyID)
}

// startRefingerprint enqueues the tenant's refingerprint job towards PRF key
// primary, or returns the one already pending or running.
func (s *Service) startRefingerprint(ctx context.Context, a vault.Actor, primary uint32) (vault.KeyJob, error) {
	var job vault.KeyJob
	err := s.inTx(ctx, "key job", func(tx pgx.Tx) error {
		var err error
		job, err = scanKeyJob(tx.QueryRow(ctx, `
			INSERT INTO key_jobs (id, tenant_id, kind, status, total, created_at, updated_at)
			SELECT $1, $2, 'refingerprint', 'pending', count(*), $3, $3 FROM tokens WHERE tenant_id = $2 AND fingerprint_key_id <> $4
			ON CONFLICT (tenant_id, kind) WHERE status IN ('pending', 'running') DO NOTHING
			RETURNING `+keyJobColumns, newID(), a.TenantID, s.clock(), int64(primary)))
		if errors.Is(err, pgx.ErrNoRows) {
			job, err = scanKeyJob(tx.QueryRow(ctx, `SELECT `+keyJobColumns+` FROM key_jobs
				WHERE tenant_id = $1 AND kind = 'refingerprint' AND status IN ('pending', 'running')`, a.TenantID))
			return err
		}
		if err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionReencrypt, uuid.Nil,
			map[string]any{"job_id": job.ID, "kind": vault.KeyJobRefingerprint, "status": "pending", "total": job.Total}))
	})
	return job, err
}

// runRefingerprint recomputes fingerprints batch after batch until every
// token of the tenant has one made with the primary PRF key, then finishes
// the job.
func (s *Service) runRefingerprint(ctx context.Context, owner string, job vault.KeyJob) error {
	tk, err := s.keys.fresh(ctx, job.TenantID)
	if err != nil {
		return s.failKeyJob(owner, job, err)
	}
	var after uuid.UUID // the walk's cursor (see reencryptOnce)
	for {
		n, last, err := s.refingerprintOnce(ctx, owner, job, tk, after)
		if err != nil {
			return err
		}
		if n > 0 {
			after = last
			continue
		}
		after = uuid.Nil // a later pass takes the tokens requests held
		var left int64
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE tenant_id = $1 AND fingerprint_key_id <> $2`,
			job.TenantID, int64(tk.fp.KeyID())).Scan(&left); err != nil {
			return dbError(err, "token")
		}
		if left == 0 {
			return s.finishKeyJob(ctx, owner, job)
		}
		if err := loop.Sleep(ctx, 50*time.Millisecond); err != nil { // the rest is locked by requests
			return err
		}
	}
}

// refingerprintOnce recomputes up to reencryptBatch fingerprints of tokens
// with ids after after in one transaction that renews the lease and counts
// progress, and returns how many and the last one's id; each token keeps
// its former fingerprint as previous_fingerprint. Rows a request holds are
// left for a later pass.
func (s *Service) refingerprintOnce(ctx context.Context, owner string, job vault.KeyJob, tk *tenantKeys, after uuid.UUID) (int, uuid.UUID, error) {
	var n int
	var last uuid.UUID
	err := s.inTx(ctx, "key job", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE key_jobs SET lease_expires_at = $3, updated_at = $4
			WHERE id = $1 AND lease_owner = $2 AND status = 'running'`, job.ID, owner, s.clock().Add(s.leaseTTL), s.clock())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errLeaseLost
		}
		ids, fps, err := s.refingerprintBatch(ctx, tx, job.TenantID, tk, after)
		if err != nil || len(ids) == 0 {
			return err
		}
		n, last = len(ids), ids[len(ids)-1]
		if _, err := tx.Exec(ctx, `
			UPDATE tokens t SET previous_fingerprint = t.fingerprint, fingerprint = v.fp, fingerprint_key_id = $2
			FROM unnest($1::uuid[], $3::bytea[]) AS v(id, fp) WHERE t.id = v.id`,
			ids, int64(tk.fp.KeyID()), fps); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE key_jobs SET done = done + $2 WHERE id = $1`, job.ID, n)
		return err
	})
	return n, last, err
}

// refingerprintBatch locks a batch of the tenant's tokens with ids after
// after, in id order, whose fingerprint was made with another PRF key, opens
// each PAN and returns the ids with their fingerprints under the primary key.
func (s *Service) refingerprintBatch(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys, after uuid.UUID) ([]uuid.UUID, [][]byte, error) {
	rows, err := tx.Query(ctx, `SELECT id, pan_ct FROM tokens
		WHERE tenant_id = $1 AND fingerprint_key_id <> $2 AND id > $4 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`,
		tenantID, int64(tk.fp.KeyID()), reencryptBatch, after)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ids []uuid.UUID
	var fps [][]byte
	for rows.Next() {
		var id uuid.UUID
		var ct []byte
		if err := rows.Scan(&id, &ct); err != nil {
			return nil, nil, err
		}
		pan, err := s.openField(tk, tenantID, id, fieldPAN, crypto.Ciphertext(ct))
		if err != nil {
			return nil, nil, err
		}
		fp, err := tk.fp.Sum(pan)
		clear(pan)
		if err != nil {
			return nil, nil, vault.Internal(err)
		}
		ids, fps = append(ids, id), append(fps, fp)
	}
	return ids, fps, rows.Err()
}
