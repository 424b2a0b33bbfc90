package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// This file is the export workers' side of export jobs: leasing items,
// auditing each send before it happens, recording what each send gave, and
// ending jobs. Leases let several replicas share a job without sending a
// token twice; a crashed worker's leases run out and another takes over.

// exportActor is the actor of what the export workers do for a tenant.
func exportActor(tenantID uuid.UUID) vault.Actor {
	return vault.Actor{TenantID: tenantID, ClientAddr: "exporter"}
}

// ExportSetup returns what sending a running job's cards needs: its URL,
// rate, destination and opened headers. It returns vault.ErrExportEnded
// once the job has ended, KindNotFound when its destination was removed,
// and a domain error when the headers do not open or the database fails.
func (s *Service) ExportSetup(ctx context.Context, jobID uuid.UUID) (vault.ExportSetup, error) {
	var out vault.ExportSetup
	var destID string
	var rate float32
	var headersCT []byte
	err := s.db.QueryRow(ctx, `SELECT id, tenant_id, destination_id, url, rate_limit, headers_ct FROM export_jobs
		WHERE id = $1 AND status = 'running'`, jobID).Scan(&out.JobID, &out.TenantID, &destID, &out.URL, &rate, &headersCT)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, vault.ErrExportEnded
	}
	if err != nil {
		return out, dbError(err, "export")
	}
	out.RateLimit = float64(rate)
	row, err := scanDestination(s.db.QueryRow(ctx, `SELECT `+destinationColumns+` FROM forwarding_destinations
		WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL`, out.TenantID, destID))
	if errors.Is(err, pgx.ErrNoRows) {
		return out, errNoDestination
	}
	if err != nil {
		return out, dbError(err, "export")
	}
	out.Destination = row.ForwardDestination
	tk, err := s.keys.get(ctx, out.TenantID)
	if err != nil {
		return out, err
	}
	pt, err := s.openField(tk, out.TenantID, jobID, fieldExportHeaders, crypto.Ciphertext(headersCT))
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(pt, &out.Headers); err != nil {
		return out, vault.Internal(errors.New("stored export headers do not decode"))
	}
	return out, nil
}

// reserveExportSendsSQL moves the running job $1's next send slot past $2
// more slots at its rate, from $3 (now) when the job had no slot reserved
// beyond it, and answers how many seconds from $3 the first starts.
const reserveExportSendsSQL = `
	UPDATE export_jobs SET next_send_at = greatest(next_send_at, $3) + make_interval(secs => $2 / rate_limit)
	WHERE id = $1 AND status = 'running'
	RETURNING extract(epoch FROM next_send_at - $3)::float8 - $2 / rate_limit`

// ReserveExportSends reserves the job's next n send slots (at least one)
// for this process and returns how long to wait before the first; the
// job's row orders the reservations of every process, so the job's rate
// holds across replicas. It returns vault.ErrExportEnded once the job has
// ended, and a domain error when the database fails.
func (s *Service) ReserveExportSends(ctx context.Context, jobID uuid.UUID, n int) (time.Duration, error) {
	wait, err := s.reserveSlots(ctx, reserveExportSendsSQL, jobID, float64(max(n, 1)), s.clock())
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, vault.ErrExportEnded
	}
	return wait, dbError(err, "export")
}

// reserveSlots runs a job's slot reservation, query (ReserveExportSends,
// ReserveImportRequests), and returns how long from now the first
// reserved slot starts. It returns pgx.ErrNoRows when the job is not
// active, and the driver's error when the database fails.
func (s *Service) reserveSlots(ctx context.Context, query string, args ...any) (time.Duration, error) {
	var wait float64
	if err := s.db.QueryRow(ctx, query, args...).Scan(&wait); err != nil {
		return 0, err
	}
	return time.Duration(max(wait, 0) * float64(time.Second)), nil
}

// claimExportSQL leases ($3 until $4) up to $2 items due at $1 of running
// jobs, each job giving its first $2 due unleased items no other claim has
// locked, read from export_items_claim.
const claimExportSQL = `
	WITH due AS (
		SELECT c.job_id, c.token_id, j.tenant_id, c.next_attempt_at, c.seq FROM export_jobs j CROSS JOIN LATERAL (
			SELECT i.job_id, i.token_id, i.next_attempt_at, i.seq FROM export_items i
			WHERE i.job_id = j.id AND i.status = 'pending' AND i.next_attempt_at <= $1
			  AND (i.lease_until IS NULL OR i.lease_until < $1)
			ORDER BY i.next_attempt_at, i.seq LIMIT $2 FOR UPDATE SKIP LOCKED) c
		WHERE j.status = 'running'
		ORDER BY c.next_attempt_at, c.seq LIMIT $2)
	UPDATE export_items i SET lease_owner = $3, lease_until = $4
	FROM due LEFT JOIN tokens t ON t.tenant_id = due.tenant_id AND t.id = due.token_id
	WHERE i.job_id = due.job_id AND i.token_id = due.token_id
	RETURNING i.job_id, due.tenant_id, i.token_id, coalesce(t.business_key, ''), i.attempts`

// ClaimExportItems leases up to n due pending items of running jobs for
// owner, oldest due first, skipping items other workers hold or lock. It
// returns a domain error when the database fails.
func (s *Service) ClaimExportItems(ctx context.Context, owner string, n int, ttl time.Duration) ([]vault.ExportWork, error) {
	now := s.clock()
	rows, err := s.db.Query(ctx, claimExportSQL, planNow, now, n, owner, now.Add(ttl))
	if err != nil {
		return nil, dbError(err, "export item")
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ExportWork, error) {
		var w vault.ExportWork
		return w, r.Scan(&w.JobID, &w.TenantID, &w.TokenID, &w.BusinessKey, &w.Attempts)
	})
	return items, dbError(err, "export item")
}

// countExportSendSQL counts a send on the item ($1, $2) still leased to
// $3 and pending (stillPending) of a running job, at $4, and answers the
// item's attempts.
var countExportSendSQL = `
	UPDATE export_items i SET attempts = i.attempts + 1, updated_at = $4
	FROM export_jobs j
	WHERE i.job_id = $1 AND i.token_id = $2 AND i.lease_owner = $3 AND ` + stillPending("i") + `
	  AND j.id = i.job_id AND j.status = 'running'
	RETURNING i.attempts`

// AuditExportItem counts owner's next send of w on the item and the job
// and commits its token.export audit row (with the job id), before
// anything is sent. It returns vault.ErrExportEnded when the job is no
// longer running or owner no longer holds w.
func (s *Service) AuditExportItem(ctx context.Context, owner string, w vault.ExportWork) error {
	err := s.inTx(ctx, "export item", func(tx pgx.Tx) error {
		var attempt int
		err := tx.QueryRow(ctx, countExportSendSQL, w.JobID, w.TokenID, owner, s.clock()).Scan(&attempt)
		if errors.Is(err, pgx.ErrNoRows) {
			return vault.ErrExportEnded
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE export_jobs SET attempts = attempts + 1, updated_at = $2 WHERE id = $1`,
			w.JobID, s.clock()); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(exportActor(w.TenantID), vault.ActionTokenExport, w.TokenID,
			map[string]any{"export_id": w.JobID, "attempt": attempt}))
	})
	if err != nil && vault.ErrorKind(err) == vault.KindNotFound {
		return vault.ErrExportEnded
	}
	return err
}

// errRemoteIDLooksLikePAN is the reason an item fails when the other
// vault's token id holds what looks like a card number: it is not kept.
const errRemoteIDLooksLikePAN = "the destination's token id looks like a card number: not kept"

// recordExportAttemptSQL stores the outcome of a send on the item ($1,
// $2) still leased to $3 and pending (stillPending): its status $4, error
// $5, remote id $6 and next attempt $7, at $8, and releases its lease.
var recordExportAttemptSQL = `
	UPDATE export_items SET status = $4, last_error = $5, remote_id = $6, next_attempt_at = $7,
	       lease_owner = NULL, lease_until = NULL, updated_at = $8
	WHERE job_id = $1 AND token_id = $2 AND lease_owner = $3 AND ` + stillPending("export_items")

// RecordExportAttempt stores the outcome of owner's send of w, releases
// its lease and counts a success or a failure on the job, in one
// transaction. A remote token id that looks like a card number (UUIDs
// aside, whose digit groups may pass for one) fails the item instead of
// being kept. It returns vault.ErrExportEnded when owner
// no longer holds w, and a domain error when the database fails.
func (s *Service) RecordExportAttempt(ctx context.Context, owner string, w vault.ExportWork, at vault.ExportAttempt) error {
	now := s.clock()
	if at.Status == vault.ItemSucceeded && holdsPAN(at.RemoteID) {
		at = vault.ExportAttempt{Status: vault.ItemFailed, Error: errRemoteIDLooksLikePAN}
	}
	next := now
	if at.Status == vault.ItemPending {
		next = now.Add(at.RetryAfter)
	}
	var remote *string
	if at.Status == vault.ItemSucceeded && at.RemoteID != "" {
		remote = &at.RemoteID
	}
	err := s.inTx(ctx, "export item", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, recordExportAttemptSQL,
			w.JobID, w.TokenID, owner, string(at.Status), card.MaskPANs(at.Error), remote, next, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return vault.ErrExportEnded
		}
		if at.Status == vault.ItemPending {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE export_jobs SET successes = successes + $2, failures = failures + $3, updated_at = $4
			WHERE id = $1`, w.JobID, boolInt(at.Status == vault.ItemSucceeded), boolInt(at.Status == vault.ItemFailed), now)
		return err
	})
	return err
}

// ReleaseExportItem gives back owner's lease on w without an outcome, so
// another worker may take it at once. It returns a domain error when the
// database fails.
func (s *Service) ReleaseExportItem(ctx context.Context, owner string, w vault.ExportWork) error {
	_, err := s.db.Exec(ctx, `UPDATE export_items SET lease_owner = NULL, lease_until = NULL
		WHERE job_id = $1 AND token_id = $2 AND lease_owner = $3`, w.JobID, w.TokenID, owner)
	return dbError(err, "export item")
}

// renewExportLeasesSQL extends $1's leases to $2 on the items named by $3
// and $4 that are still pending (stillPending).
var renewExportLeasesSQL = `
	UPDATE export_items i SET lease_until = $2
	FROM unnest($3::uuid[], $4::uuid[]) AS h(job_id, token_id)
	WHERE i.job_id = h.job_id AND i.token_id = h.token_id AND i.lease_owner = $1 AND ` + stillPending("i")

// RenewExportLeases extends by ttl owner's leases on held, the items it is
// working on: the worker's heartbeat. It returns a domain error when the
// database fails.
func (s *Service) RenewExportLeases(ctx context.Context, owner string, held []vault.ExportWork, ttl time.Duration) error {
	jobs, tokens := make([]uuid.UUID, len(held)), make([]uuid.UUID, len(held))
	for i, w := range held {
		jobs[i], tokens[i] = w.JobID, w.TokenID
	}
	_, err := s.db.Exec(ctx, renewExportLeasesSQL, owner, s.clock().Add(ttl), jobs, tokens)
	return dbError(err, "export item")
}

// ReleaseExportLeases gives back every export lease owner holds, for a
// worker that stops cleanly. It returns a domain error when the database
// fails.
func (s *Service) ReleaseExportLeases(ctx context.Context, owner string) error {
	_, err := s.db.Exec(ctx, `UPDATE export_items SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, owner)
	return dbError(err, "export item")
}

// CompleteExports ends as finished every running job that has no pending
// item left, and returns them. It returns a domain error when the database
// fails.
func (s *Service) CompleteExports(ctx context.Context) ([]vault.ExportJob, error) {
	rows, err := s.db.Query(ctx, `
		SELECT j.id, j.tenant_id FROM export_jobs j
		WHERE j.status = 'running' AND NOT EXISTS (
			SELECT 1 FROM export_items i WHERE i.job_id = j.id AND i.status = 'pending')`)
	if err != nil {
		return nil, dbError(err, "export")
	}
	type ref struct{ id, tenant uuid.UUID }
	refs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ref, error) {
		var x ref
		return x, r.Scan(&x.id, &x.tenant)
	})
	if err != nil {
		return nil, dbError(err, "export")
	}
	var done []vault.ExportJob
	for _, r := range refs {
		var job vault.ExportJob
		err := s.inTx(ctx, "export", func(tx pgx.Tx) error {
			var err error
			job, err = s.endExport(ctx, tx, exportActor(r.tenant), r.id, vault.ExportFinished, "")
			return err
		})
		if vault.IsExportEnded(err) {
			continue // another worker finished it first
		}
		if err != nil {
			return done, err
		}
		done = append(done, job)
		s.wakeWebhooks()
	}
	return done, nil
}

// FailExport ends a running job as failed with reason, a text for the
// merchant that must hold no secret. It returns vault.ErrExportEnded when
// the job had already ended.
func (s *Service) FailExport(ctx context.Context, jobID uuid.UUID, reason string) error {
	err := s.inTx(ctx, "export", func(tx pgx.Tx) error {
		var tenantID uuid.UUID
		if err := tx.QueryRow(ctx, `SELECT tenant_id FROM export_jobs WHERE id = $1`, jobID).Scan(&tenantID); err != nil {
			return err
		}
		_, err := s.endExport(ctx, tx, exportActor(tenantID), jobID, vault.ExportFailed, card.MaskPANs(reason))
		return err
	})
	if err == nil {
		s.wakeWebhooks()
	}
	return err
}

// ActiveExports returns which of ids name running jobs. It returns a
// domain error when the database fails.
func (s *Service) ActiveExports(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM export_jobs WHERE id = ANY($1) AND status = 'running'`, ids)
	if err != nil {
		return nil, dbError(err, "export")
	}
	active, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, dbError(err, "export")
	}
	out := make(map[uuid.UUID]bool, len(active))
	for _, id := range active {
		out[id] = true
	}
	return out, nil
}

var _ vault.ExportQueue = (*Service)(nil)
