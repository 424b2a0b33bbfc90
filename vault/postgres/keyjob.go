package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
)

// reencryptBatch is how many tokens one transaction re-seals.
const reencryptBatch = 500

const keyJobColumns = `id, tenant_id, kind, status, total, done, error, created_at, started_at, finished_at, updated_at`

func scanKeyJob(row pgx.Row) (vault.KeyJob, error) {
	var j vault.KeyJob
	err := row.Scan(&j.ID, &j.TenantID, &j.Kind, &j.Status, &j.Total, &j.Done, &j.Error,
		&j.CreatedAt, &j.StartedAt, &j.FinishedAt, &j.UpdatedAt)
	return j, err
}

// errLeaseLost means another worker holds the job now.
var errLeaseLost = errors.New("key job lease lost")

// StartReencrypt enqueues a re-encryption job for the actor's tenant and
// audits it. When one is already pending or running it returns that one and
// false. It returns a domain error when the database fails.
func (s *Service) StartReencrypt(ctx context.Context, a vault.Actor) (vault.KeyJob, bool, error) {
	tk, err := s.keys.fresh(ctx, a.TenantID)
	if err != nil {
		return vault.KeyJob{}, false, err
	}
	now := s.clock()
	var job vault.KeyJob
	var created bool
	err = s.inTx(ctx, "key job", func(tx pgx.Tx) error {
		var err error
		job, err = scanKeyJob(tx.QueryRow(ctx, `
			INSERT INTO key_jobs (id, tenant_id, kind, status, total, created_at, updated_at)
			SELECT $1, $2, 'reencrypt', 'pending', count(*), $3, $3 FROM tokens WHERE tenant_id = $2 AND key_id <> $4
			ON CONFLICT (tenant_id, kind) WHERE status IN ('pending', 'running') DO NOTHING
			RETURNING `+keyJobColumns, newID(), a.TenantID, now, int64(tk.sealer.PrimaryKeyID())))
		if errors.Is(err, pgx.ErrNoRows) {
			job, err = scanKeyJob(tx.QueryRow(ctx, `SELECT `+keyJobColumns+` FROM key_jobs
				WHERE tenant_id = $1 AND kind = 'reencrypt' AND status IN ('pending', 'running')`, a.TenantID))
			return err
		}
		if err != nil {
			return err
		}
		created = true
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionReencrypt, uuid.Nil,
			map[string]any{"job_id": job.ID, "status": "pending", "total": job.Total}))
	})
	return job, created, err
}

// GetKeyJob returns the tenant's key job id, or KindNotFound.
func (s *Service) GetKeyJob(ctx context.Context, tenantID, id uuid.UUID) (vault.KeyJob, error) {
	j, err := scanKeyJob(s.db.QueryRow(ctx, `SELECT `+keyJobColumns+` FROM key_jobs WHERE id = $1 AND tenant_id = $2`, id, tenantID))
	return j, dbError(err, "key job")
}

// RunOneKeyJob claims one claimable job (only job id when it is not
// uuid.Nil) and runs it to the end. It reports whether it claimed one. A
// job whose worker died is claimable once its lease runs out.
func (s *Service) RunOneKeyJob(ctx context.Context, owner string, id uuid.UUID) (bool, error) {
	job, err := s.claimKeyJob(ctx, owner, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "key job")
	}
	if job.Kind == vault.KeyJobRefingerprint {
		err = s.runRefingerprint(ctx, owner, job)
	} else {
		err = s.runReencrypt(ctx, owner, job)
	}
	if errors.Is(err, errLeaseLost) {
		return true, nil
	}
	if err != nil && ctx.Err() != nil {
		s.releaseKeyJob(owner, job.ID)
		return true, ctx.Err()
	}
	return true, err
}

// claimKeyJob takes the lease of the oldest claimable job: one no one
// holds, whose lease ran out, or that owner itself still holds (its run
// stopped on an error, such as a database failover, that left the lease
// behind: it resumes at its next poll rather than after the lease).
func (s *Service) claimKeyJob(ctx context.Context, owner string, id uuid.UUID) (vault.KeyJob, error) {
	now := s.clock()
	return scanKeyJob(s.db.QueryRow(ctx, `
		UPDATE key_jobs SET status = 'running', lease_owner = $1, lease_expires_at = $3,
		       started_at = coalesce(started_at, $2), updated_at = $2
		WHERE id = (SELECT id FROM key_jobs
		            WHERE status IN ('pending', 'running')
		              AND (lease_expires_at IS NULL OR lease_expires_at < $2 OR lease_owner = $1)
		              AND ($4 = '00000000-0000-0000-0000-000000000000'::uuid OR id = $4)
		            ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+keyJobColumns, owner, now, now.Add(s.leaseTTL), id))
}

// releaseKeyJob gives up the lease of a job this worker stops early, so
// another worker can resume it at once.
func (s *Service) releaseKeyJob(owner string, id uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = s.db.Exec(ctx, `UPDATE key_jobs SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2`, id, owner)
}

// runReencrypt re-seals batch after batch until no token of the tenant is
// left under an old key, then finishes the job.
func (s *Service) runReencrypt(ctx context.Context, owner string, job vault.KeyJob) error {
	tk, err := s.keys.fresh(ctx, job.TenantID)
	if err != nil {
		return s.failKeyJob(owner, job, err)
	}
	var after uuid.UUID // the walk's cursor (see reencryptOnce)
	for {
		n, last, err := s.reencryptOnce(ctx, owner, job, tk, after)
		if err != nil {
			return err
		}
		s.metrics.Reencrypted(n)
		if n > 0 {
			after = last
			continue
		}
		after = uuid.Nil // a later pass takes the tokens requests held
		left, err := s.tokensOffKey(ctx, job.TenantID, tk.sealer.PrimaryKeyID())
		if err != nil {
			return err
		}
		if left == 0 {
			if _, err := s.resealForwarding(ctx, job.TenantID, tk); err != nil {
				return err
			}
			if err := s.resealSideRows(ctx, job.TenantID, tk); err != nil {
				return err
			}
			return s.finishKeyJob(ctx, owner, job)
		}
		if err := loop.Sleep(ctx, 50*time.Millisecond); err != nil { // the rest is locked by requests
			return err
		}
	}
}

// resealSideRows re-seals what besides tokens (and forwarding rows, see
// resealForwarding) the tenant keeps under its data keyset — the webhook
// secret and undelivered token events, replaced card versions, stored
// idempotent answers, active import jobs' credentials — under the primary
// key, in one transaction.
func (s *Service) resealSideRows(ctx context.Context, tenantID uuid.UUID, tk *tenantKeys) error {
	return s.inTx(ctx, "key job", func(tx pgx.Tx) error {
		if _, err := s.resealWebhookRows(ctx, tx, tenantID, tk); err != nil {
			return err
		}
		if _, err := s.resealVersions(ctx, tx, tenantID, tk); err != nil {
			return err
		}
		if _, err := s.resealAnswers(ctx, tx, tenantID, tk); err != nil {
			return err
		}
		if _, err := s.resealExportHeaders(ctx, tx, tenantID, tk); err != nil {
			return err
		}
		_, err := s.resealImportCredentials(ctx, tx, tenantID, tk)
		return err
	})
}

// tokensOffKey counts the tenant's tokens not sealed with keyID.
func (s *Service) tokensOffKey(ctx context.Context, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE tenant_id = $1 AND key_id <> $2`,
		tenantID, int64(keyID)).Scan(&n)
	return n, dbError(err, "token")
}

// Walking a tenant's tokens (the re-encryption and refingerprint jobs,
// and the forwarding records' re-seal): each batch locks the next rows by
// id after the last batch's last one, which a pass keeps in memory, so a
// batch reads only the rows it takes and the rows it passes over since
// the last batch. A batch that looked for the rows left off the key from
// the first id on skipped every row the batches before it had done: at
// half of 1,000,000 tokens, 500,000 rows read and filtered to lock 500
// (0.4–1.3 s a batch; 1.9–15 ms from the cursor), so a job took time
// quadratic in the tenant's tokens. Rows a request held when the pass
// reached them are left behind the cursor: once a pass ends and some are
// left off the key, another pass starts from the first id. A job resumed
// by another worker starts a pass from the first id too.

// reencryptOnce re-seals up to reencryptBatch tokens with ids after after
// in one transaction that also renews the lease and counts progress, and
// returns how many it re-sealed and the last one's id. Rows a request
// holds are skipped for a later pass; rows it locks cannot change under
// it, so a concurrent update is never overwritten.
func (s *Service) reencryptOnce(ctx context.Context, owner string, job vault.KeyJob, tk *tenantKeys, after uuid.UUID) (int, uuid.UUID, error) {
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
		batch, err := s.resealBatch(ctx, tx, job.TenantID, tk, after)
		if err != nil {
			return err
		}
		n = len(batch.ids)
		if n == 0 {
			return nil
		}
		last = batch.ids[n-1]
		if err := batch.write(ctx, tx, tk.sealer.PrimaryKeyID()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE key_jobs SET done = done + $2 WHERE id = $1`, job.ID, n)
		return err
	})
	return n, last, err
}

// resealed is a batch of tokens' fresh ciphertexts.
type resealed struct {
	ids            []uuid.UUID
	pan, name, cvc [][]byte
}

// resealBatch locks a batch of the tenant's tokens under old keys with ids
// after after, in id order, and re-seals their fields under the primary
// key, with the same associated data.
func (s *Service) resealBatch(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys, after uuid.UUID) (resealed, error) {
	rows, err := tx.Query(ctx, `SELECT id, pan_ct, name_ct, cvc_ct FROM tokens
		WHERE tenant_id = $1 AND key_id <> $2 AND id > $4 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`,
		tenantID, int64(tk.sealer.PrimaryKeyID()), reencryptBatch, after)
	if err != nil {
		return resealed{}, err
	}
	defer rows.Close()
	var b resealed
	for rows.Next() {
		var id uuid.UUID
		var pan, name, cvc []byte
		if err := rows.Scan(&id, &pan, &name, &cvc); err != nil {
			return resealed{}, err
		}
		fields := [][]byte{pan, name, cvc}
		for i, field := range []string{fieldPAN, fieldName, fieldCVC} {
			if fields[i], err = s.reseal(tk, tenantID, id, field, fields[i]); err != nil {
				return resealed{}, err
			}
		}
		b.ids, b.pan, b.name, b.cvc = append(b.ids, id), append(b.pan, fields[0]), append(b.name, fields[1]), append(b.cvc, fields[2])
	}
	return b, rows.Err()
}

// reseal opens one field (any enabled key) and seals it under the primary.
func (s *Service) reseal(tk *tenantKeys, tenantID, tokenID uuid.UUID, field string, ct []byte) ([]byte, error) {
	if ct == nil {
		return nil, nil
	}
	pt, err := s.openField(tk, tenantID, tokenID, field, crypto.Ciphertext(ct))
	if err != nil {
		return nil, err
	}
	return s.sealField(tk, tenantID, tokenID, field, pt)
}

// write stores a batch in one statement.
func (b resealed) write(ctx context.Context, tx pgx.Tx, keyID uint32) error {
	_, err := tx.Exec(ctx, `
		UPDATE tokens t SET key_id = $2, pan_ct = v.pan, name_ct = v.name, cvc_ct = v.cvc
		FROM unnest($1::uuid[], $3::bytea[], $4::bytea[], $5::bytea[]) AS v(id, pan, name, cvc)
		WHERE t.id = v.id`, b.ids, int64(keyID), b.pan, b.name, b.cvc)
	return err
}

// finishKeyJob marks the job finished and audits it.
func (s *Service) finishKeyJob(ctx context.Context, owner string, job vault.KeyJob) error {
	return s.inTx(ctx, "key job", func(tx pgx.Tx) error {
		var done int64
		err := tx.QueryRow(ctx, `UPDATE key_jobs SET status = 'finished', finished_at = $3, updated_at = $3,
			total = greatest(total, done), lease_owner = NULL, lease_expires_at = NULL
			WHERE id = $1 AND lease_owner = $2 RETURNING done`, job.ID, owner, s.clock()).Scan(&done)
		if errors.Is(err, pgx.ErrNoRows) {
			return errLeaseLost
		}
		if err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(vault.Operator(job.TenantID), vault.ActionReencrypt, uuid.Nil,
			map[string]any{"job_id": job.ID, "status": "finished", "done": done}))
	})
}

// failKeyJob records why a job cannot go on; the cause stays in the log.
func (s *Service) failKeyJob(owner string, job vault.KeyJob, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.db.Exec(ctx, `UPDATE key_jobs SET status = 'failed', error = $3, finished_at = $4, updated_at = $4,
		lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2`,
		job.ID, owner, vault.AsError(cause).Message, s.clock())
	if err != nil {
		return dbError(err, "key job")
	}
	return cause
}
