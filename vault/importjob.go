package vault

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
)

// ImportStatus is where an import job is in its life:
// preparing → running → finished, or aborted, or failed.
type ImportStatus string

// The import job statuses.
const (
	ImportPreparing ImportStatus = "preparing"
	ImportRunning   ImportStatus = "running"
	ImportFinished  ImportStatus = "finished"
	ImportAborted   ImportStatus = "aborted"
	ImportFailed    ImportStatus = "failed"
)

// ProviderStripe is the one import provider.
const ProviderStripe = "stripe"

// The audited import actions.
const (
	ActionImportCreate Action = "import.create"
	ActionImportAbort  Action = "import.abort"
	ActionImportFinish Action = "import.finish"
	ActionImportFail   Action = "import.fail"
)

// ImportJob is a job that copies a provider's card payment methods into the
// vault. It never holds the provider key itself, only a hint of it.
type ImportJob struct {
	ID            uuid.UUID
	TenantID      uuid.UUID
	Provider      string
	Status        ImportStatus
	FailureReason string
	// ProviderKeyHint names the provider key without revealing it:
	// "sk_test_…4242".
	ProviderKeyHint string
	Total           int64 // payment methods found, skipped ones included
	Attempts        int64 // forward attempts made
	Successes       int64
	Failures        int64 // payment methods given up on
	Skipped         int64 // payment methods that cannot be imported (Link, non-card)
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
	UpdatedAt       time.Time
}

// Active reports whether the job is preparing or running.
func (j ImportJob) Active() bool { return j.Status == ImportPreparing || j.Status == ImportRunning }

// Ended reports whether the job is finished, aborted or failed.
func (j ImportJob) Ended() bool { return !j.Active() }

// Pending returns how many payment methods are still to be imported.
func (j ImportJob) Pending() int64 { return j.Total - j.Successes - j.Failures - j.Skipped }

// ImportRecord is the import job as the API and webhooks show it.
type ImportRecord struct {
	ID            uuid.UUID      `json:"id"`
	Object        string         `json:"object"`
	Provider      string         `json:"provider"`
	Status        ImportStatus   `json:"status"`
	FailureReason *string        `json:"failure_reason"`
	Stripe        importStripe   `json:"stripe"`
	Counts        importCounters `json:"counts"`
	CreatedAt     string         `json:"created_at"`
	StartedAt     *string        `json:"started_at"`
	FinishedAt    *string        `json:"finished_at"`
}

type importStripe struct {
	APIKey string `json:"api_key"`
}

type importCounters struct {
	Total     int64 `json:"total"`
	Attempts  int64 `json:"attempts"`
	Successes int64 `json:"successes"`
	Failures  int64 `json:"failures"`
	Skipped   int64 `json:"skipped"`
}

// Record returns the job's API and webhook form.
func (j ImportJob) Record() ImportRecord {
	r := ImportRecord{
		ID: j.ID, Object: "import", Provider: j.Provider, Status: j.Status,
		Stripe: importStripe{APIKey: j.ProviderKeyHint},
		Counts: importCounters{Total: j.Total, Attempts: j.Attempts, Successes: j.Successes,
			Failures: j.Failures, Skipped: j.Skipped},
		CreatedAt: Timestamp(j.CreatedAt), StartedAt: optionalTimestamp(j.StartedAt),
		FinishedAt: optionalTimestamp(j.FinishedAt),
	}
	if j.FailureReason != "" {
		r.FailureReason = &j.FailureReason
	}
	return r
}

// Timestamp formats t as the API shows times: RFC 3339, UTC, seconds.
func Timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func optionalTimestamp(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := Timestamp(*t)
	return &s
}

// CreateImportInput is what a merchant gives to start an import.
type CreateImportInput struct {
	Provider     string
	StripeAPIKey Secret
}

// stripeKeyPattern is the shape of a Stripe secret or restricted key.
var stripeKeyPattern = regexp.MustCompile(`^(sk|rk)_(test|live)_[0-9A-Za-z]{8,247}$`)

// validate returns a KindInvalid error for an unknown provider or a value
// that is not a Stripe secret or restricted key. It never quotes the key.
func (in CreateImportInput) validate() error {
	if in.Provider != ProviderStripe {
		return InvalidParam("invalid_provider", "provider", `provider must be "stripe"`)
	}
	if !stripeKeyPattern.MatchString(in.StripeAPIKey.Reveal()) {
		return InvalidParam("invalid_api_key", "stripe.api_key",
			"stripe.api_key must be a Stripe secret key (sk_live_…, sk_test_…) or restricted key (rk_…)")
	}
	return nil
}

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
	total, attempts, successes, failures, skipped, created_at, started_at, finished_at, updated_at`

func scanImport(row pgx.Row) (ImportJob, error) {
	var j ImportJob
	err := row.Scan(&j.ID, &j.TenantID, &j.Provider, &j.Status, &j.FailureReason, &j.ProviderKeyHint,
		&j.Total, &j.Attempts, &j.Successes, &j.Failures, &j.Skipped,
		&j.CreatedAt, &j.StartedAt, &j.FinishedAt, &j.UpdatedAt)
	return j, err
}

// CreateImport starts an import job for the actor's tenant: it seals the
// provider key under the tenant data keyset, mints the job's own API key
// (tokens:create only, revoked when the job ends) and audits. It returns a
// KindInvalid error for a bad provider or key, and a KindConflict error
// naming the job when one is already preparing or running.
func (s *Service) CreateImport(ctx context.Context, a Actor, in CreateImportInput) (ImportJob, error) {
	if err := in.validate(); err != nil {
		return ImportJob{}, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return ImportJob{}, err
	}
	now := s.clock()
	job := ImportJob{ID: uuid.New(), TenantID: a.TenantID, Provider: in.Provider, Status: ImportPreparing,
		ProviderKeyHint: keyHint(in.StripeAPIKey.Reveal()), CreatedAt: now, UpdatedAt: now}
	secret, prefix, err := newSecret()
	if err != nil {
		return ImportJob{}, Internal(err)
	}
	providerCT, err := s.sealField(tk, a.TenantID, job.ID, fieldProviderKey, []byte(in.StripeAPIKey.Reveal()))
	if err != nil {
		return ImportJob{}, err
	}
	forwardCT, err := s.sealField(tk, a.TenantID, job.ID, fieldForwardKey, []byte(secret))
	if err != nil {
		return ImportJob{}, err
	}
	err = s.inTx(ctx, "import", func(tx pgx.Tx) error {
		if err := activeImportConflict(ctx, tx, a.TenantID); err != nil {
			return err
		}
		keyID := uuid.New()
		if _, err := tx.Exec(ctx, `
			INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, scopes, description, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			keyID, a.TenantID, prefix, hashSecret(secret), scopeStrings([]Scope{ScopeTokensCreate}),
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
		return insertAudit(ctx, tx, s.event(a, ActionImportCreate, uuid.Nil,
			map[string]any{"import_id": job.ID, "provider": job.Provider, "api_key_id": keyID}))
	})
	if err != nil {
		return ImportJob{}, s.sealRefused(a.TenantID, err)
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
	return &Error{Kind: KindConflict, Code: "import_in_progress",
		Message: fmt.Sprintf("import %s is already %s; wait for it to end or abort it", id, status)}
}

// GetImport returns the actor's tenant's import job id. It returns a
// KindNotFound error for an unknown id or another tenant's job.
func (s *Service) GetImport(ctx context.Context, a Actor, id uuid.UUID) (ImportJob, error) {
	job, err := scanImport(s.db.QueryRow(ctx, `SELECT `+importColumns+` FROM import_jobs WHERE id = $1 AND tenant_id = $2`,
		id, a.TenantID))
	return job, dbError(err, "import")
}

// FindImport returns import job id of any tenant, for operator commands.
// It returns a KindNotFound error for an unknown id.
func (s *Service) FindImport(ctx context.Context, id uuid.UUID) (ImportJob, error) {
	job, err := scanImport(s.db.QueryRow(ctx, `SELECT `+importColumns+` FROM import_jobs WHERE id = $1`, id))
	return job, dbError(err, "import")
}

// ImportPage is one page of import jobs, newest first.
type ImportPage struct {
	Jobs    []ImportJob
	HasMore bool
}

// ListImports returns the actor's tenant's import jobs newest first, after
// the job startingAfter when it is not uuid.Nil. It returns a KindBadRequest
// error for a limit outside 1–100, and InvalidCursor for a startingAfter
// that names none of the tenant's jobs.
func (s *Service) ListImports(ctx context.Context, a Actor, limit int, startingAfter uuid.UUID) (ImportPage, error) {
	if err := checkLimit(limit); err != nil {
		return ImportPage{}, err
	}
	if err := s.checkImportCursor(ctx, a.TenantID, startingAfter); err != nil {
		return ImportPage{}, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT `+importColumns+` FROM import_jobs
		WHERE tenant_id = $1 AND ($2::uuid IS NULL OR (created_at, id) < (
			SELECT created_at, id FROM import_jobs WHERE id = $2 AND tenant_id = $1))
		ORDER BY created_at DESC, id DESC LIMIT $3`, a.TenantID, nullUUID(startingAfter), limit+1)
	if err != nil {
		return ImportPage{}, dbError(err, "import")
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ImportJob, error) { return scanImport(r) })
	if err != nil {
		return ImportPage{}, dbError(err, "import")
	}
	page := ImportPage{Jobs: jobs}
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
		return InvalidCursor()
	}
	return nil
}

// AbortImport stops the actor's tenant's job id: no new forward starts, its
// credentials are wiped and its API key revoked. It returns KindNotFound for
// an unknown or foreign id and KindConflict when the job has already ended.
func (s *Service) AbortImport(ctx context.Context, a Actor, id uuid.UUID) (ImportJob, error) {
	var job ImportJob
	err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
		cur, err := scanImport(tx.QueryRow(ctx, `SELECT `+importColumns+` FROM import_jobs
			WHERE id = $1 AND tenant_id = $2 FOR UPDATE`, id, a.TenantID))
		if err != nil {
			return err
		}
		if cur.Ended() {
			return &Error{Kind: KindConflict, Code: "import_ended", Message: "import " + id.String() + " has already " + string(cur.Status)}
		}
		job, err = s.endImport(ctx, tx, a, id, ImportAborted, "")
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
// errJobEnded when the job is no longer active.
func (s *Service) endImport(ctx context.Context, tx pgx.Tx, a Actor, id uuid.UUID, status ImportStatus, reason string) (ImportJob, error) {
	now := s.clock()
	job, err := scanImport(tx.QueryRow(ctx, `
		UPDATE import_jobs SET status = $2, failure_reason = $3, provider_key_ct = NULL, forward_key_ct = NULL,
		       lease_owner = NULL, lease_until = NULL, finished_at = $4, updated_at = $4, `+recountImportSQL+`
		WHERE id = $1 AND status IN ('preparing', 'running')
		RETURNING `+importColumns, id, string(status), reason, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return ImportJob{}, errJobEnded
	}
	if err != nil {
		return ImportJob{}, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE api_keys SET revoked_at = $2 WHERE id = (SELECT forward_key_id FROM import_jobs WHERE id = $1)
		AND revoked_at IS NULL`, id, now); err != nil {
		return ImportJob{}, err
	}
	s.apiKeys.forgetTenant(job.TenantID) // the job's key among them
	ev := s.event(a, endAction(status), uuid.Nil, map[string]any{"import_id": id, "total": job.Total,
		"successes": job.Successes, "failures": job.Failures, "skipped": job.Skipped, "reason": reason})
	if err := insertAudit(ctx, tx, ev); err != nil {
		return ImportJob{}, err
	}
	return job, enqueueEvent(ctx, tx, job.TenantID, endEvent(status), job.Record())
}

// endAction returns the audit action of a job's end.
func endAction(status ImportStatus) Action {
	switch status {
	case ImportAborted:
		return ActionImportAbort
	case ImportFailed:
		return ActionImportFail
	}
	return ActionImportFinish
}

// endEvent returns the webhook event of a job's end.
func endEvent(status ImportStatus) EventType {
	switch status {
	case ImportAborted:
		return EventImportAborted
	case ImportFailed:
		return EventImportFailed
	}
	return EventImportFinished
}

// errJobEnded means the job was aborted, failed or finished meanwhile.
var errJobEnded = &Error{Kind: KindConflict, Code: "import_ended", Message: "the import job has ended"}

// IsImportEnded reports whether err says the import job ended under a worker.
func IsImportEnded(err error) bool { return errors.Is(err, errJobEnded) }

// openCredential opens one of a job's sealed credentials.
func (s *Service) openCredential(ctx context.Context, tenantID, jobID uuid.UUID, field string, ct []byte) (Secret, error) {
	tk, err := s.keys.get(ctx, tenantID)
	if err != nil {
		return Secret{}, err
	}
	pt, err := s.openField(tk, tenantID, jobID, field, crypto.Ciphertext(ct))
	if err != nil {
		return Secret{}, err
	}
	return NewSecret(string(pt)), nil
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
		WHERE tenant_id = $1 AND status IN ('preparing', 'running')`
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
