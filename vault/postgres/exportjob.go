package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
)

// This file is the merchant's side of export jobs: create, read, list,
// abort, and the ledger. exportwork.go is the workers' side.

// fieldExportHeaders is bound into the associated data of a job's sealed headers.
const fieldExportHeaders = "export_headers"

const exportColumns = `id, tenant_id, destination_id, url, business_key_prefix, created_after, rate_limit, status,
	failure_reason, total, attempts, successes, failures, created_at, finished_at, updated_at`

func scanExport(row pgx.Row) (vault.ExportJob, error) {
	var j vault.ExportJob
	var rate float32
	err := row.Scan(&j.ID, &j.TenantID, &j.DestinationID, &j.URL, &j.Filter.BusinessKeyPrefix, &j.Filter.CreatedAfter,
		&rate, &j.Status, &j.FailureReason, &j.Total, &j.Attempts, &j.Successes, &j.Failures,
		&j.CreatedAt, &j.FinishedAt, &j.UpdatedAt)
	j.RateLimit = float64(rate)
	return j, err
}

// errNoDestination answers an export naming no live destination of the tenant.
var errNoDestination = &vault.Error{Kind: vault.KindNotFound, Code: vault.CodeResourceMissing, Param: "destination",
	Message: "no such forwarding destination"}

// CreateExport starts an export job: the tokens in.Filter selects now are
// its items, its headers are sealed under the tenant data keyset, and the
// job is audited, in one transaction. See vault.Exports for its errors.
func (s *Service) CreateExport(ctx context.Context, a vault.Actor, in vault.CreateExportInput) (vault.ExportJob, error) {
	if err := in.Validate(); err != nil {
		return vault.ExportJob{}, err
	}
	if err := checkForwardHeaders(in.Headers); err != nil {
		return vault.ExportJob{}, err
	}
	if in.RateLimit == 0 {
		in.RateLimit = vault.DefaultExportRate
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.ExportJob{}, err
	}
	now := s.clock()
	job := vault.ExportJob{ID: uuid.New(), TenantID: a.TenantID, DestinationID: in.DestinationID, Filter: in.Filter,
		RateLimit: in.RateLimit, Status: vault.ExportRunning, CreatedAt: now, UpdatedAt: now}
	headers, err := json.Marshal(in.Headers)
	if err != nil {
		return vault.ExportJob{}, vault.Internal(err)
	}
	headersCT, err := s.sealField(tk, a.TenantID, job.ID, fieldExportHeaders, headers)
	if err != nil {
		return vault.ExportJob{}, err
	}
	err = s.inTx(ctx, "export", func(tx pgx.Tx) error {
		if job.URL, err = exportURL(ctx, tx, a.TenantID, in); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO export_jobs (id, tenant_id, destination_id, url, business_key_prefix, created_after, rate_limit,
			                         status, headers_ct, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $9)`,
			job.ID, a.TenantID, job.DestinationID, job.URL, in.Filter.BusinessKeyPrefix, in.Filter.CreatedAfter,
			in.RateLimit, []byte(headersCT), now); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `
			WITH items AS (
				INSERT INTO export_items (job_id, token_id, status, next_attempt_at, updated_at)
				SELECT $1, t.id, 'pending', $5, $5 FROM tokens t
				WHERE t.tenant_id = $2 AND ($3 = '' OR left(t.business_key, length($3)) = $3)
				  AND ($4::timestamptz IS NULL OR t.created_at > $4)
				ORDER BY t.id
				RETURNING 1)
			SELECT count(*) FROM items`,
			job.ID, a.TenantID, in.Filter.BusinessKeyPrefix, in.Filter.CreatedAfter, now).Scan(&job.Total); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE export_jobs SET total = $2 WHERE id = $1`, job.ID, job.Total); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionExportCreate, uuid.Nil, map[string]any{"export_id": job.ID,
			"destination_id": job.DestinationID, "url": job.URL, "total": job.Total,
			"business_key_prefix": in.Filter.BusinessKeyPrefix, "created_after": job.Record().Filter.CreatedAfter}))
	})
	if err != nil {
		return vault.ExportJob{}, s.sealRefused(a.TenantID, err)
	}
	return job, nil
}

// exportURL returns where in's cards go: in.URL when the tenant's live
// destination in.DestinationID allows it, else the destination's URL when
// it is exact. It returns errNoDestination for an unknown, removed or
// foreign destination, and KindBadRequest for a URL it does not allow or a
// destination that does not take JSON.
func exportURL(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, in vault.CreateExportInput) (string, error) {
	row, err := scanDestination(tx.QueryRow(ctx, `SELECT `+destinationColumns+` FROM forwarding_destinations
		WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL`, tenantID, in.DestinationID))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errNoDestination
	}
	if err != nil {
		return "", err
	}
	var dest forwarding.Destination
	if err := json.Unmarshal(row.Config, &dest); err != nil {
		return "", vault.Internal(errors.New("stored destination does not decode"))
	}
	if dest.Format != forwarding.FormatJSON {
		return "", &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid, Param: "destination",
			Message: "an export sends JSON: the destination must take a JSON body (such as the stripe_own_vault preset)"}
	}
	dest.URL = row.URL
	u := in.URL
	if u == "" {
		u = row.URL
	}
	if _, ok := forwarding.Match([]forwarding.Destination{dest}, u); !ok || strings.HasSuffix(u, "/*") {
		return "", &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid, Param: "url",
			Message: "url must be an address the destination allows (give one when the destination is a prefix)"}
	}
	return u, nil
}

// GetExport returns the actor's tenant's export job id. It returns a
// KindNotFound error for an unknown id or another tenant's job.
func (s *Service) GetExport(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.ExportJob, error) {
	job, err := scanExport(s.db.QueryRow(ctx, `SELECT `+exportColumns+` FROM export_jobs WHERE id = $1 AND tenant_id = $2`,
		id, a.TenantID))
	return job, dbError(err, "export")
}

// ListExports returns the actor's tenant's export jobs newest first, after
// the job startingAfter when it is not uuid.Nil. It returns a
// KindBadRequest error for a limit outside 1–100 or a startingAfter that
// names none of the tenant's jobs.
func (s *Service) ListExports(ctx context.Context, a vault.Actor, limit int, startingAfter uuid.UUID) (vault.ExportPage, error) {
	if err := checkLimit(limit); err != nil {
		return vault.ExportPage{}, err
	}
	if startingAfter != uuid.Nil {
		if _, err := s.GetExport(ctx, a, startingAfter); err != nil {
			if vault.ErrorKind(err) == vault.KindNotFound {
				return vault.ExportPage{}, vault.InvalidCursor()
			}
			return vault.ExportPage{}, err
		}
	}
	rows, err := s.db.Query(ctx, `
		SELECT `+exportColumns+` FROM export_jobs
		WHERE tenant_id = $1 AND ($2::uuid IS NULL OR (created_at, id) < (
			SELECT created_at, id FROM export_jobs WHERE id = $2 AND tenant_id = $1))
		ORDER BY created_at DESC, id DESC LIMIT $3`, a.TenantID, nullUUID(startingAfter), limit+1)
	if err != nil {
		return vault.ExportPage{}, dbError(err, "export")
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ExportJob, error) { return scanExport(r) })
	if err != nil {
		return vault.ExportPage{}, dbError(err, "export")
	}
	page := vault.ExportPage{Jobs: jobs}
	if len(jobs) > limit {
		page.Jobs, page.HasMore = jobs[:limit], true
	}
	return page, nil
}

// AbortExport stops the actor's tenant's job id: no new send starts and
// its headers are wiped. It returns KindNotFound for an unknown or foreign
// id and KindConflict when the job has already ended.
func (s *Service) AbortExport(ctx context.Context, a vault.Actor, id uuid.UUID) (vault.ExportJob, error) {
	var job vault.ExportJob
	err := s.inTx(ctx, "export", func(tx pgx.Tx) error {
		cur, err := scanExport(tx.QueryRow(ctx, `SELECT `+exportColumns+` FROM export_jobs
			WHERE id = $1 AND tenant_id = $2 FOR UPDATE`, id, a.TenantID))
		if err != nil {
			return err
		}
		if cur.Ended() {
			return &vault.Error{Kind: vault.KindConflict, Code: vault.CodeExportEnded, Message: "export " + id.String() + " has already " + string(cur.Status)}
		}
		job, err = s.endExport(ctx, tx, a, id, vault.ExportAborted, "")
		return err
	})
	if err == nil {
		s.wakeWebhooks()
	}
	return job, err
}

// endExport moves a running job to status, wipes its headers, audits and
// queues the webhook event, in tx. It returns vault.ErrExportEnded when
// the job is no longer running.
func (s *Service) endExport(ctx context.Context, tx pgx.Tx, a vault.Actor, id uuid.UUID, status vault.ExportStatus, reason string) (vault.ExportJob, error) {
	now := s.clock()
	job, err := scanExport(tx.QueryRow(ctx, `
		UPDATE export_jobs SET status = $2, failure_reason = $3, headers_ct = NULL, finished_at = $4, updated_at = $4
		WHERE id = $1 AND status = 'running'
		RETURNING `+exportColumns, id, string(status), reason, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.ExportJob{}, vault.ErrExportEnded
	}
	if err != nil {
		return vault.ExportJob{}, err
	}
	action, event := vault.ActionExportFinish, vault.EventExportFinished
	switch status {
	case vault.ExportAborted:
		action, event = vault.ActionExportAbort, vault.EventExportAborted
	case vault.ExportFailed:
		action, event = vault.ActionExportFail, vault.EventExportFailed
	}
	ev := s.event(a, action, uuid.Nil, map[string]any{"export_id": id, "total": job.Total,
		"successes": job.Successes, "failures": job.Failures, "reason": reason})
	if err := s.insertAudit(ctx, tx, ev); err != nil {
		return vault.ExportJob{}, err
	}
	return job, enqueueEvent(ctx, tx, job.TenantID, event, job.Record())
}

// ListExportItems returns the ledger of the actor's tenant's job id with
// each token's business key and remote token id (the mapping), optionally
// only items in status, after the item seq startingAfter. It returns
// KindNotFound for an unknown or foreign job, KindBadRequest for a limit
// outside 1–100 and KindInvalid for an unknown status.
func (s *Service) ListExportItems(ctx context.Context, a vault.Actor, id uuid.UUID, status vault.ItemStatus, limit int, startingAfter int64) (vault.ExportItemPage, error) {
	if err := checkLimit(limit); err != nil {
		return vault.ExportItemPage{}, err
	}
	switch status {
	case "", vault.ItemPending, vault.ItemSucceeded, vault.ItemFailed:
	default:
		return vault.ExportItemPage{}, vault.InvalidParam(vault.CodeInvalidStatus, "status", "status must be pending, succeeded or failed")
	}
	if _, err := s.GetExport(ctx, a, id); err != nil {
		return vault.ExportItemPage{}, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT i.seq, i.token_id, coalesce(t.business_key, ''), i.status, i.attempts, i.last_error,
		       coalesce(i.remote_id, ''), i.updated_at
		FROM export_items i LEFT JOIN tokens t ON t.id = i.token_id AND t.tenant_id = $5
		WHERE i.job_id = $1 AND ($2 = '' OR i.status = $2) AND i.seq > $3
		ORDER BY i.seq LIMIT $4`, id, string(status), startingAfter, limit+1, a.TenantID)
	if err != nil {
		return vault.ExportItemPage{}, dbError(err, "export item")
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ExportItem, error) {
		var it vault.ExportItem
		return it, r.Scan(&it.Seq, &it.TokenID, &it.BusinessKey, &it.Status, &it.Attempts, &it.LastError, &it.RemoteID, &it.UpdatedAt)
	})
	if err != nil {
		return vault.ExportItemPage{}, dbError(err, "export item")
	}
	page := vault.ExportItemPage{Items: items}
	if len(items) > limit {
		page.Items, page.HasMore = items[:limit], true
	}
	return page, nil
}

// ExportMapping calls each with every item of the actor's tenant's job id,
// in ledger order, a page of the ledger at a time. It returns KindNotFound
// for an unknown or foreign job, the first error of each, and a domain
// error when the database fails.
func (s *Service) ExportMapping(ctx context.Context, a vault.Actor, id uuid.UUID, each func(vault.ExportItem) error) error {
	var after int64
	for {
		page, err := s.ListExportItems(ctx, a, id, "", 100, after) // the largest page checkLimit takes
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			if err := each(it); err != nil {
				return err
			}
			after = it.Seq
		}
		if !page.HasMore {
			return nil
		}
	}
}

var _ vault.Exports = (*Service)(nil)

// exportHeadersUnderKey counts the tenant's running export jobs whose
// headers keyID sealed.
func exportHeadersUnderKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	cts, err := runningExportHeaders(ctx, q, tenantID, false)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range cts {
		if id, _ := crypto.Ciphertext(c.ct).KeyID(); id == keyID {
			n++
		}
	}
	return n, nil
}

// resealExportHeaders re-seals, under tk's primary data key, the headers of
// the tenant's running export jobs still sealed with another key, so that
// the old key can be retired; it returns how many it re-sealed.
func (s *Service) resealExportHeaders(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	cts, err := runningExportHeaders(ctx, tx, tenantID, true)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cts {
		if id, _ := crypto.Ciphertext(c.ct).KeyID(); id == tk.sealer.PrimaryKeyID() {
			continue
		}
		pt, err := s.openField(tk, tenantID, c.id, fieldExportHeaders, crypto.Ciphertext(c.ct))
		if err != nil {
			return n, err
		}
		ct, err := s.sealField(tk, tenantID, c.id, fieldExportHeaders, pt)
		if err != nil {
			return n, err
		}
		if _, err := tx.Exec(ctx, `UPDATE export_jobs SET headers_ct = $2 WHERE id = $1`, c.id, []byte(ct)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// sealedHeaders is a running export job's sealed headers.
type sealedHeaders struct {
	id uuid.UUID
	ct []byte
}

// runningExportHeaders returns the sealed headers of the tenant's running
// export jobs, locked for update when lock is set.
func runningExportHeaders(ctx context.Context, q querier, tenantID uuid.UUID, lock bool) ([]sealedHeaders, error) {
	sql := `SELECT id, headers_ct FROM export_jobs WHERE tenant_id = $1 AND status = 'running'`
	if lock {
		sql += ` FOR UPDATE`
	}
	rows, err := q.Query(ctx, sql, tenantID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealedHeaders, error) {
		var c sealedHeaders
		return c, r.Scan(&c.id, &c.ct)
	})
}
