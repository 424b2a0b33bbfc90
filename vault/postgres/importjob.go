package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// keyHint returns "sk_test_…" plus the last four characters of a provider key.
func keyHint(key string) string {
	prefix := key[:len("sk_test_")]
	if key[3:7] == "live" {
		prefix = key[:len("sk_live_")]
	}
	return prefix + "…" + key[len(key)-4:]
}

// The fields bound into the associated data of a job's sealed credentials.
const (
	fieldProviderKey = "import_provider_key"
	fieldForwardKey  = "import_forward_key"
)

const importColumns = `id, tenant_id, provider, status, failure_reason, provider_key_hint,
	total, attempts, successes, failures, skipped, file_format, file_size, rows_done,
	created_at, started_at, finished_at, updated_at`

func scanImport(row pgx.Row) (vault.ImportJob, error) {
	var j vault.ImportJob
	err := row.Scan(&j.ID, &j.TenantID, &j.Provider, &j.Status, &j.FailureReason, &j.ProviderKeyHint,
		&j.Total, &j.Attempts, &j.Successes, &j.Failures, &j.Skipped, &j.FileFormat, &j.FileSize, &j.RowsDone,
		&j.CreatedAt, &j.StartedAt, &j.FinishedAt, &j.UpdatedAt)
	return j, err
}

// CreateImport starts an import job for the actor's tenant: it seals the
// provider key under the tenant data keyset, mints the job's own API key
// (tokens:create and tokens:update only, revoked when the job ends) and audits. It returns a
// KindInvalid error for a bad provider or key, and a KindConflict error
// naming the job when one is already preparing or running.
func (s *Service) CreateImport(ctx context.Context, a vault.Actor, in vault.CreateImportInput) (vault.ImportJob, error) {
	if err := in.Validate(); err != nil {
		return vault.ImportJob{}, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.ImportJob{}, err
	}
	now := s.clock()
	job := vault.ImportJob{ID: newID(), TenantID: a.TenantID, Provider: in.Provider, Status: vault.ImportPreparing,
		ProviderKeyHint: keyHint(in.StripeAPIKey.Reveal()), CreatedAt: now, UpdatedAt: now}
	secret, prefix, err := newSecret()
	if err != nil {
		return vault.ImportJob{}, vault.Internal(err)
	}
	providerCT, err := s.sealField(tk, a.TenantID, job.ID, fieldProviderKey, []byte(in.StripeAPIKey.Reveal()))
	if err != nil {
		return vault.ImportJob{}, err
	}
	forwardCT, err := s.sealField(tk, a.TenantID, job.ID, fieldForwardKey, []byte(secret))
	if err != nil {
		return vault.ImportJob{}, err
	}
	err = s.inTx(ctx, "import", func(tx pgx.Tx) error {
		if err := activeImportConflict(ctx, tx, a.TenantID); err != nil {
			return err
		}
		keyID := uuid.New()
		if _, err := tx.Exec(ctx, `
			INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, scopes, description, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			keyID, a.TenantID, prefix, hashSecret(secret), scopeStrings([]vault.Scope{vault.ScopeTokensCreate, vault.ScopeTokensUpdate}),
			"import job "+job.ID.String(), now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO import_jobs (id, tenant_id, provider, status, provider_key_ct, provider_key_hint,
			                         forward_key_id, forward_key_ct, created_at, updated_at)
			VALUES ($1, $2, $3, 'preparing', $4, $5, $6, $7, $8, $8)`,
			job.ID, a.TenantID, job.Provider, []byte(providerCT), job.ProviderKeyHint, keyID, []byte(forwardCT), now); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionImportCreate, uuid.Nil,
			map[string]any{"import_id": job.ID, "provider": job.Provider, "api_key_id": keyID}))
	})
	if err != nil {
		return vault.ImportJob{}, s.sealRefused(a.TenantID, err)
	}
	return job, nil
}

// activeImportConflict returns a KindConflict error naming the tenant's
// preparing or running job, if any.
func activeImportConflict(ctx context.Context, q querier, tenantID uuid.UUID) error {
	var id uuid.UUID
	var status string
	err := q.QueryRow(ctx, `SELECT id, status FROM import_jobs WHERE tenant_id = $1 AND status IN ('preparing', 'running')`,
		tenantID).Scan(&id, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return &vault.Error{Kind: vault.KindConflict, Code: vault.CodeImportInProgress,
		Message: fmt.Sprintf("import %s is already %s; wait for it to end or abort it", id, status)}
}

// GetImport returns the actor's tenant's import job id. It returns a
// KindNotFound error for an unknown id or another tenant's job.
func (s *Service) GetImport(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.ImportJob, error) {
	job, err := scanImport(s.db.QueryRow(ctx, `SELECT `+importColumns+` FROM import_jobs WHERE id = $1 AND tenant_id = $2`,
		id, a.TenantID))
	return job, dbError(err, "import")
}

// FindImport returns import job id of any tenant, for operator commands.
// It returns a KindNotFound error for an unknown id.
func (s *Service) FindImport(ctx context.Context, id uuid.UUID) (vault.ImportJob, error) {
	job, err := scanImport(s.db.QueryRow(ctx, `SELECT `+importColumns+` FROM import_jobs WHERE id = $1`, id))
	return job, dbError(err, "import")
}

// ListImports returns the actor's tenant's import jobs newest first, after
// the job startingAfter when it is not uuid.Nil. It returns a KindBadRequest
// error for a limit outside 1–100, and InvalidCursor for a startingAfter
// that names none of the tenant's jobs.
func (s *Service) ListImports(ctx context.Context, a vault.Actor, limit int, startingAfter uuid.UUID) (vault.ImportPage, error) {
	if err := checkLimit(limit); err != nil {
		return vault.ImportPage{}, err
	}
	if err := s.checkImportCursor(ctx, a.TenantID, startingAfter); err != nil {
		return vault.ImportPage{}, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT `+importColumns+` FROM import_jobs
		WHERE tenant_id = $1 AND ($2::uuid IS NULL OR (created_at, id) < (
			SELECT created_at, id FROM import_jobs WHERE id = $2 AND tenant_id = $1))
		ORDER BY created_at DESC, id DESC LIMIT $3`, a.TenantID, nullUUID(startingAfter), limit+1)
	if err != nil {
		return vault.ImportPage{}, dbError(err, "import")
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ImportJob, error) { return scanImport(r) })
	if err != nil {
		return vault.ImportPage{}, dbError(err, "import")
	}
	page := vault.ImportPage{Jobs: jobs}
	if len(jobs) > limit {
		page.Jobs, page.HasMore = jobs[:limit], true
	}
	return page, nil
}

// checkImportCursor returns InvalidCursor unless id is uuid.Nil or one of
// the tenant's import jobs, and a domain error when the database fails.
func (s *Service) checkImportCursor(ctx context.Context, tenantID, id uuid.UUID) error {
	if id == uuid.Nil {
		return nil
	}
	var found bool
	err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM import_jobs WHERE id = $1 AND tenant_id = $2)`,
		id, tenantID).Scan(&found)
	if err != nil {
		return dbError(err, "import")
	}
	if !found {
		return vault.InvalidCursor()
	}
	return nil
}

// AbortImport stops the actor's tenant's job id: no new forward starts, its
// credentials are wiped and its API key revoked. It returns KindNotFound for
// an unknown or foreign id and KindConflict when the job has already ended.
func (s *Service) AbortImport(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.ImportJob, error) {
	var job vault.ImportJob
	err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
		cur, err := scanImport(tx.QueryRow(ctx, `SELECT `+importColumns+` FROM import_jobs
			WHERE id = $1 AND tenant_id = $2 FOR UPDATE`, id, a.TenantID))
		if err != nil {
			return err
		}
		if cur.Ended() {
			return &vault.Error{Kind: vault.KindConflict, Code: vault.CodeImportEnded, Message: "import " + id.String() + " has already " + string(cur.Status)}
		}
		job, err = s.endImport(ctx, tx, a, id, vault.ImportAborted, "")
		return err
	})
	if err == nil {
		s.wakeWebhooks()
	}
	return job, err
}

// endImport moves an active job to status, recomputes its attempt counters
// from its items (see importCounts), wipes its credentials, revokes its
// API key, audits and queues the webhook event, in tx. It returns
// vault.ErrImportEnded when the job is no longer active.
func (s *Service) endImport(ctx context.Context, tx pgx.Tx, a vault.Actor, id uuid.UUID, status vault.ImportStatus, reason string) (vault.ImportJob, error) {
	now := s.clock()
	job, err := scanImport(tx.QueryRow(ctx, `
		UPDATE import_jobs SET status = $2, failure_reason = $3, provider_key_ct = NULL, forward_key_ct = NULL,
		       lease_owner = NULL, lease_until = NULL, finished_at = $4, updated_at = $4, `+recountImportSQL+`
		WHERE id = $1 AND status IN ('preparing', 'running')
		RETURNING `+importColumns, id, string(status), reason, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.ImportJob{}, vault.ErrImportEnded
	}
	if err != nil {
		return vault.ImportJob{}, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM import_file_chunks WHERE job_id = $1`, id); err != nil {
		return vault.ImportJob{}, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE api_keys SET revoked_at = $2 WHERE id = (SELECT forward_key_id FROM import_jobs WHERE id = $1)
		AND revoked_at IS NULL`, id, now); err != nil {
		return vault.ImportJob{}, err
	}
	s.apiKeys.forgetTenant(job.TenantID) // the job's key among them
	ev := s.event(a, endAction(status), uuid.Nil, map[string]any{"import_id": id, "total": job.Total,
		"successes": job.Successes, "failures": job.Failures, "skipped": job.Skipped, "reason": reason})
	if err := s.insertAudit(ctx, tx, ev); err != nil {
		return vault.ImportJob{}, err
	}
	return job, enqueueEvent(ctx, tx, job.TenantID, endEvent(status), job.Record())
}

// endAction returns the audit action of a job's end.
func endAction(status vault.ImportStatus) vault.Action {
	switch status {
	case vault.ImportAborted:
		return vault.ActionImportAbort
	case vault.ImportFailed:
		return vault.ActionImportFail
	}
	return vault.ActionImportFinish
}

// endEvent returns the webhook event of a job's end.
func endEvent(status vault.ImportStatus) vault.EventType {
	switch status {
	case vault.ImportAborted:
		return vault.EventImportAborted
	case vault.ImportFailed:
		return vault.EventImportFailed
	}
	return vault.EventImportFinished
}

// openCredential opens one of a job's sealed credentials.
func (s *Service) openCredential(ctx context.Context, tenantID, jobID uuid.UUID, field string, ct []byte) (card.Secret, error) {
	tk, err := s.keys.get(ctx, tenantID)
	if err != nil {
		return card.Secret{}, err
	}
	pt, err := s.openField(tk, tenantID, jobID, field, crypto.Ciphertext(ct))
	if err != nil {
		return card.Secret{}, err
	}
	return card.NewSecret(string(pt)), nil
}

// resealImportCredentials re-seals, under tk's primary data key, the
// credentials of the tenant's active import jobs still sealed with another
// key, so that the old key can be retired. It returns how many jobs it
// re-sealed.
func (s *Service) resealImportCredentials(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	creds, err := activeCredentials(ctx, tx, tenantID, true)
	if err != nil {
		return 0, err
	}
	primary := tk.sealer.PrimaryKeyID()
	n := 0
	for _, c := range creds {
		if c.keyID(0) == primary && c.keyID(1) == primary {
			continue
		}
		var out [2][]byte
		for i, field := range []string{fieldProviderKey, fieldForwardKey} {
			pt, err := s.openField(tk, tenantID, c.id, field, crypto.Ciphertext(c.ct[i]))
			if err != nil {
				return n, err
			}
			ct, err := s.sealField(tk, tenantID, c.id, field, pt)
			if err != nil {
				return n, err
			}
			out[i] = ct
		}
		if _, err := tx.Exec(ctx, `UPDATE import_jobs SET provider_key_ct = $2, forward_key_ct = $3 WHERE id = $1`,
			c.id, out[0], out[1]); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// importCredentialsUnderKey counts the tenant's active import jobs with a
// credential sealed by keyID.
func importCredentialsUnderKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	creds, err := activeCredentials(ctx, q, tenantID, false)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range creds {
		if c.keyID(0) == keyID || c.keyID(1) == keyID {
			n++
		}
	}
	return n, nil
}

// sealedCredentials are an active job's two sealed credentials.
type sealedCredentials struct {
	id uuid.UUID
	ct [2][]byte
}

// keyID returns the id of the key that sealed credential i, 0 when unreadable.
func (c sealedCredentials) keyID(i int) uint32 {
	id, _ := crypto.Ciphertext(c.ct[i]).KeyID()
	return id
}

// activeCredentials returns the sealed credentials of the tenant's active
// import jobs, locked for update when lock is set.
func activeCredentials(ctx context.Context, q querier, tenantID uuid.UUID, lock bool) ([]sealedCredentials, error) {
	sql := `SELECT id, provider_key_ct, forward_key_ct FROM import_jobs
		WHERE tenant_id = $1 AND status IN ('preparing', 'running') AND provider = 'stripe'`
	if lock {
		sql += ` FOR UPDATE`
	}
	rows, err := q.Query(ctx, sql, tenantID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealedCredentials, error) {
		var c sealedCredentials
		return c, r.Scan(&c.id, &c.ct[0], &c.ct[1])
	})
}
