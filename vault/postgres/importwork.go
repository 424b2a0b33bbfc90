package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// This file is the import workers' side of import jobs: leasing a job's
// preparation and its items, recording what each forward gave, and ending
// jobs. Leases let several replicas share a job without doing an item twice;
// a crashed worker's leases run out and another worker takes over.

// ClaimPreparation leases the oldest preparing job no live worker holds, for
// owner, and returns it with its credentials; false when there is none. It
// returns a domain error when the database fails or a credential does not
// open.
func (s *Service) ClaimPreparation(ctx context.Context, owner string, ttl time.Duration) (vault.Preparation, bool, error) {
	now := s.clock()
	var p vault.Preparation
	var providerCT, forwardCT []byte
	err := s.db.QueryRow(ctx, `
		UPDATE import_jobs SET lease_owner = $1, lease_until = $2, started_at = COALESCE(started_at, $3), updated_at = $3
		WHERE id = (SELECT id FROM import_jobs
		            WHERE status = 'preparing' AND provider = 'stripe' AND (lease_until IS NULL OR lease_until < $3 OR lease_owner = $1)
		            ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id, tenant_id, provider_key_ct, forward_key_ct, cursor`,
		owner, now.Add(ttl), now).Scan(&p.JobID, &p.TenantID, &providerCT, &forwardCT, &p.Cursor)
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.Preparation{}, false, nil
	}
	if err != nil {
		return vault.Preparation{}, false, dbError(err, "import")
	}
	p.ImportCredentials, err = s.credentials(ctx, p.TenantID, p.JobID, providerCT, forwardCT)
	return p, err == nil, err
}

// credentials opens a job's two sealed credentials.
func (s *Service) credentials(ctx context.Context, tenantID, jobID uuid.UUID, providerCT, forwardCT []byte) (vault.ImportCredentials, error) {
	c := vault.ImportCredentials{JobID: jobID, TenantID: tenantID}
	var err error
	if c.ProviderKey, err = s.openCredential(ctx, tenantID, jobID, fieldProviderKey, providerCT); err != nil {
		return vault.ImportCredentials{}, err
	}
	if c.ForwardKey, err = s.openCredential(ctx, tenantID, jobID, fieldForwardKey, forwardCT); err != nil {
		return vault.ImportCredentials{}, err
	}
	return c, nil
}

// Credentials returns an active job's credentials. It returns vault.ErrImportEnded
// (see IsImportEnded) once the job has ended and its credentials are wiped.
func (s *Service) Credentials(ctx context.Context, jobID uuid.UUID) (vault.ImportCredentials, error) {
	var tenantID uuid.UUID
	var providerCT, forwardCT []byte
	err := s.db.QueryRow(ctx, `SELECT tenant_id, provider_key_ct, forward_key_ct FROM import_jobs
		WHERE id = $1 AND status IN ('preparing', 'running')`, jobID).Scan(&tenantID, &providerCT, &forwardCT)
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.ImportCredentials{}, vault.ErrImportEnded
	}
	if err != nil {
		return vault.ImportCredentials{}, dbError(err, "import")
	}
	return s.credentials(ctx, tenantID, jobID, providerCT, forwardCT)
}

// reserveImportRequestsSQL moves the active job $1's next Stripe request
// slot past $2 more slots at $4 a second, from $3 (now) when the job had
// no slot reserved beyond it, and answers how many seconds from $3 the
// first starts.
const reserveImportRequestsSQL = `
	UPDATE import_jobs SET next_request_at = greatest(next_request_at, $3) + make_interval(secs => $2 / $4::float8)
	WHERE id = $1 AND status IN ('preparing', 'running')
	RETURNING extract(epoch FROM next_request_at - $3)::float8 - $2 / $4::float8`

// ReserveImportRequests reserves the job's next n Stripe request slots (at
// least one) at rate a second for this process and returns how long to
// wait before the first; the job's row orders the reservations of every
// process, so the rate holds across replicas. It returns
// vault.ErrImportEnded once the job has ended, and a domain error when
// the rate is not above 0 or the database fails.
func (s *Service) ReserveImportRequests(ctx context.Context, jobID uuid.UUID, n int, rate float64) (time.Duration, error) {
	if !(rate > 0) {
		return 0, vault.Internal(fmt.Errorf("import request rate %g is not above 0", rate))
	}
	wait, err := s.reserveSlots(ctx, reserveImportRequestsSQL, jobID, float64(max(n, 1)), s.clock(), rate)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, vault.ErrImportEnded
	}
	return wait, dbError(err, "import")
}

// RecordFound stores one page of found payment methods as items (pending, or
// skipped with their reason), advances the job's cursor to cursor and renews
// owner's lease, in one transaction, so preparation resumes after the last
// recorded page. Payment methods already recorded are left as they are. It
// returns vault.ErrImportEnded (IsImportEnded) when the job ended or owner lost it.
func (s *Service) RecordFound(ctx context.Context, owner string, jobID uuid.UUID, items []vault.FoundItem, cursor string, ttl time.Duration) error {
	now := s.clock()
	pms, customers, statuses, reasons := make([]string, len(items)), make([]string, len(items)), make([]string, len(items)), make([]string, len(items))
	for i, it := range items {
		pms[i], customers[i], statuses[i], reasons[i] = it.PaymentMethod, it.Customer, string(vault.ItemPending), it.SkipReason
		if it.SkipReason != "" {
			statuses[i] = string(vault.ItemSkipped)
		}
	}
	return s.inTx(ctx, "import", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			WITH ins AS (
				INSERT INTO import_items (job_id, payment_method, customer, status, last_error, next_attempt_at, updated_at)
				SELECT $1, pm, cus, st, why, $6, $6 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(pm, cus, st, why)
				ON CONFLICT DO NOTHING RETURNING status)
			UPDATE import_jobs SET total = total + (SELECT count(*) FROM ins),
			       skipped = skipped + (SELECT count(*) FROM ins WHERE status = 'skipped'),
			       cursor = $7, lease_until = $8, updated_at = $6
			WHERE id = $1 AND status = 'preparing' AND lease_owner = $9`,
			jobID, pms, customers, statuses, reasons, now, cursor, now.Add(ttl), owner)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return vault.ErrImportEnded
		}
		return nil
	})
}

// FinishPreparation moves owner's preparing job to running. It returns
// vault.ErrImportEnded (IsImportEnded) when the job ended or owner lost it.
func (s *Service) FinishPreparation(ctx context.Context, owner string, jobID uuid.UUID) error {
	tag, err := s.db.Exec(ctx, `
		UPDATE import_jobs SET status = 'running', lease_owner = NULL, lease_until = NULL, updated_at = $3
		WHERE id = $1 AND status = 'preparing' AND lease_owner = $2`, jobID, owner, s.clock())
	if err != nil {
		return dbError(err, "import")
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrImportEnded
	}
	return nil
}

// ReleasePreparation gives back owner's lease on a preparing job, so that
// it is retried at the next poll.
func (s *Service) ReleasePreparation(ctx context.Context, owner string, jobID uuid.UUID) error {
	_, err := s.db.Exec(ctx, `UPDATE import_jobs SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2`, jobID, owner)
	return dbError(err, "import")
}

// FailImport ends an active job as failed with reason, a text for the
// merchant that must hold no secret. It returns vault.ErrImportEnded
// (IsImportEnded) when the job had already ended.
func (s *Service) FailImport(ctx context.Context, jobID uuid.UUID, reason string) error {
	err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
		var tenantID uuid.UUID
		if err := tx.QueryRow(ctx, `SELECT tenant_id FROM import_jobs WHERE id = $1`, jobID).Scan(&tenantID); err != nil {
			return err
		}
		_, err := s.endImport(ctx, tx, vault.Actor{TenantID: tenantID, ClientAddr: "importer"}, jobID, vault.ImportFailed, card.MaskPANs(reason))
		return err
	})
	if err == nil {
		s.wakeWebhooks()
	}
	return err
}

// ClaimItems leases up to n due pending items of running jobs for owner,
// oldest due first, skipping items other workers hold. It returns a domain
// error when the database fails.
func (s *Service) ClaimItems(ctx context.Context, owner string, n int, ttl time.Duration) ([]vault.ItemWork, error) {
	now := s.clock()
	rows, err := s.db.Query(ctx, claimItemsSQL, planNow, now, n, owner, now.Add(ttl))
	if err != nil {
		return nil, dbError(err, "import item")
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ItemWork, error) {
		var w vault.ItemWork
		return w, r.Scan(&w.JobID, &w.PaymentMethod, &w.Attempts, &w.Throttled)
	})
	return items, dbError(err, "import item")
}

// checkedOnly returns cond written so that PostgreSQL checks it on the
// rows a statement finds but never takes it to imply a partial index's
// predicate, so that such an index cannot serve the statement: (cond) IS
// TRUE, which holds exactly when cond does.
func checkedOnly(cond string) string { return "(" + cond + ") IS TRUE" }

// stillPending returns the condition "the item is still pending" on the
// item table named a, for the statements that look items up by their key
// (an attempt written, a send counted, a lease renewed): a lease is only
// ever taken on a pending item and given back when its status changes, and
// this checks it once more. It is checkedOnly: with the plain comparison,
// which implies the claim indexes' predicate, PostgreSQL probed
// import_items_claim (export_items_claim) by job and read every pending
// item of the job for each item looked up, instead of the primary key by
// job and item, whenever its statistics said the table was nearly empty
// and it held a few thousand items (after a VACUUM of an empty queue,
// until autovacuum next analysed it; past about 10,000 the estimate, which
// grows with the table's pages, chose the key again): in the bench's
// 10,000-card import, attempt batches of 13–28 items read 1,597–5,547
// index entries each.
func stillPending(a string) string { return checkedOnly(a + ".status = 'pending'") }

// claimItemsSQL leases ($3 until $4) up to $2 items due at $1. Each active
// job (running, or still preparing: its items are forwarded as soon as they
// are found) gives its first $2 due unleased items that no other claim has
// locked, read in (next_attempt_at, seq) order from import_items_claim, so
// a claim reads about $2 items per active job however many are pending;
// the oldest due of those are leased.
const claimItemsSQL = `
	WITH due AS (
		SELECT c.job_id, c.payment_method FROM import_jobs j CROSS JOIN LATERAL (
			SELECT i.job_id, i.payment_method, i.next_attempt_at, i.seq FROM import_items i
			WHERE i.job_id = j.id AND i.status = 'pending' AND i.next_attempt_at <= $1
			  AND (i.lease_until IS NULL OR i.lease_until < $1)
			ORDER BY i.next_attempt_at, i.seq LIMIT $2 FOR UPDATE SKIP LOCKED) c
		WHERE j.status IN ('preparing', 'running')
		ORDER BY c.next_attempt_at, c.seq LIMIT $2)
	UPDATE import_items i SET lease_owner = $3, lease_until = $4
	FROM due WHERE i.job_id = due.job_id AND i.payment_method = due.payment_method
	RETURNING i.job_id, i.payment_method, i.attempts, i.throttled`

// RecordAttempt stores the outcome of owner's attempt on an item, releases
// its lease and counts it on the job, in one statement and one commit
// together with the attempts other forwarders record meanwhile
// (importCounts); it returns once that commit is done. It returns
// vault.ErrImportEnded (IsImportEnded) when owner no longer holds the item, and a
// domain error when the database fails.
func (s *Service) RecordAttempt(ctx context.Context, owner string, w vault.ItemWork, at vault.Attempt) error {
	rec := &recordedAttempt{owner: owner, job: w.JobID, pm: w.PaymentMethod, status: at.Status,
		token: at.TokenID, err: card.MaskPANs(at.Error), retryAt: s.clock(), throttled: boolInt(at.Throttled)}
	if at.Status == vault.ItemPending {
		rec.retryAt = rec.retryAt.Add(at.RetryAfter)
	}
	err := s.importCounts.batch.do(rec, func(batch []*recordedAttempt) error { return s.writeAttempts(ctx, batch) })
	if err != nil {
		return err
	}
	if !rec.written {
		return vault.ErrImportEnded
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ReleaseItem gives back owner's lease on an item without counting an
// attempt, so another worker may take it at once.
func (s *Service) ReleaseItem(ctx context.Context, owner string, w vault.ItemWork) error {
	_, err := s.db.Exec(ctx, `UPDATE import_items SET lease_owner = NULL, lease_until = NULL
		WHERE job_id = $1 AND payment_method = $2 AND lease_owner = $3`, w.JobID, w.PaymentMethod, owner)
	return dbError(err, "import item")
}

// RenewImportLeases extends, by ttl, owner's leases on the jobs it
// prepares and on held, the items it is working on: the worker's heartbeat.
// A lease owner took without learning of it (a claim whose answer was lost
// when the database failed over) is not renewed and runs out, so another
// worker takes the item. It returns a domain error when the database fails.
func (s *Service) RenewImportLeases(ctx context.Context, owner string, held []vault.ItemWork, ttl time.Duration) error {
	now := s.clock()
	jobs, pms := make([]uuid.UUID, len(held)), make([]string, len(held))
	for i, w := range held {
		jobs[i], pms[i] = w.JobID, w.PaymentMethod
	}
	return s.inTx(ctx, "import", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, renewItemLeasesSQL, owner, now.Add(ttl), jobs, pms); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE import_jobs SET lease_until = $2 WHERE lease_owner = $1 AND status = 'preparing' AND provider = 'stripe'`,
			owner, now.Add(ttl))
		return err
	})
}

// renewItemLeasesSQL extends owner's ($1) leases to $2 on the items named
// by $3 and $4 that are still pending (stillPending), skipping any another
// transaction has locked: an attempt being written (which releases the
// lease) or an item given back. Waiting for those, with the items locked so
// far held and the job row next, deadlocked with attempt batches, which
// lock their items and then the job row to count on it; the job row is
// updated last for the same reason.
var renewItemLeasesSQL = `
	UPDATE import_items i SET lease_until = $2
	FROM (SELECT l.job_id, l.payment_method FROM import_items l
	      JOIN unnest($3::uuid[], $4::text[]) AS h(job_id, payment_method)
	        ON l.job_id = h.job_id AND l.payment_method = h.payment_method
	      WHERE l.lease_owner = $1 AND ` + stillPending("l") + `
	      FOR UPDATE OF l SKIP LOCKED) h
	WHERE i.job_id = h.job_id AND i.payment_method = h.payment_method`

// ReleaseImportLeases gives back every import lease owner holds, for a
// worker that stops cleanly.
func (s *Service) ReleaseImportLeases(ctx context.Context, owner string) error {
	return s.inTx(ctx, "import", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE import_jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, owner); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE import_items SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, owner)
		return err
	})
}

// CompleteImports ends as finished every running job that has no pending
// item left, and returns them. It returns a domain error when the database
// fails.
func (s *Service) CompleteImports(ctx context.Context) ([]vault.ImportJob, error) {
	rows, err := s.db.Query(ctx, `
		SELECT j.id, j.tenant_id FROM import_jobs j
		WHERE j.status = 'running' AND j.provider = 'stripe' AND NOT EXISTS (
			SELECT 1 FROM import_items i WHERE i.job_id = j.id AND i.status = 'pending')`)
	if err != nil {
		return nil, dbError(err, "import")
	}
	type ref struct{ id, tenant uuid.UUID }
	refs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ref, error) {
		var x ref
		return x, r.Scan(&x.id, &x.tenant)
	})
	if err != nil {
		return nil, dbError(err, "import")
	}
	var done []vault.ImportJob
	for _, r := range refs {
		var job vault.ImportJob
		err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
			var err error
			job, err = s.endImport(ctx, tx, vault.Actor{TenantID: r.tenant, ClientAddr: "importer"}, r.id, vault.ImportFinished, "")
			return err
		})
		if vault.IsImportEnded(err) {
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

// ListImportItems returns the ledger of the actor's tenant's job id,
// optionally only items in status, after the item seq startingAfter. It
// returns KindNotFound for an unknown or foreign job, KindBadRequest for a
// limit outside 1–100 and KindInvalid for an unknown status.
func (s *Service) ListImportItems(ctx context.Context, a vault.Actor, id uuid.UUID, status vault.ItemStatus, limit int, startingAfter int64) (vault.ItemPage, error) {
	if err := checkLimit(limit); err != nil {
		return vault.ItemPage{}, err
	}
	switch status {
	case "", vault.ItemPending, vault.ItemSucceeded, vault.ItemFailed, vault.ItemSkipped:
	default:
		return vault.ItemPage{}, vault.InvalidParam(vault.CodeInvalidStatus, "status", "status must be pending, succeeded, failed or skipped")
	}
	job, err := s.GetImport(ctx, a, id)
	if err != nil {
		return vault.ItemPage{}, err
	}
	if job.Provider == vault.ProviderFile {
		items, err := s.listFileRows(ctx, id, status, limit+1, startingAfter)
		if err != nil {
			return vault.ItemPage{}, dbError(err, "import item")
		}
		return itemPage(items, limit), nil
	}
	rows, err := s.db.Query(ctx, `
		SELECT seq, payment_method, customer, status, attempts, last_error, token_id, updated_at
		FROM import_items WHERE job_id = $1 AND ($2 = '' OR status = $2) AND seq > $3
		ORDER BY seq LIMIT $4`, id, string(status), startingAfter, limit+1)
	if err != nil {
		return vault.ItemPage{}, dbError(err, "import item")
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ImportItem, error) {
		var it vault.ImportItem
		var token *uuid.UUID
		err := r.Scan(&it.Seq, &it.PaymentMethod, &it.Customer, &it.Status, &it.Attempts, &it.LastError, &token, &it.UpdatedAt)
		if token != nil {
			it.TokenID = *token
		}
		return it, err
	})
	if err != nil {
		return vault.ItemPage{}, dbError(err, "import item")
	}
	return itemPage(items, limit), nil
}

// itemPage returns the page of up to limit items of items, one more than
// limit when there are more.
func itemPage(items []vault.ImportItem, limit int) vault.ItemPage {
	page := vault.ItemPage{Items: items}
	if len(items) > limit {
		page.Items, page.HasMore = items[:limit], true
	}
	return page
}

// ActiveImports returns which of ids name jobs still preparing or running.
// Concurrent calls share one query (activeChecks), which starts after each
// of them was made: an abort committed before a call is always seen by it.
// It returns a domain error when the database fails, and every call
// sharing a query fails when the ctx of the one that runs it ends.
func (s *Service) ActiveImports(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error) {
	c := &activeCheck{ids: ids}
	err := s.activeChecks.do(c, func(batch []*activeCheck) error { return s.readActiveImports(ctx, batch) })
	return c.active, err
}

// activeCheck is one ActiveImports call: the jobs it asks about and, once
// its batch was read, which of them are active.
type activeCheck struct {
	ids    []uuid.UUID
	active map[uuid.UUID]bool
}

// readActiveImports answers a batch of ActiveImports calls with one query.
// Every forwarder of an import asks about its job before each forward; one
// query per forward was a tenth of the vault's CPU in an import (its
// busiest single statement by count).
func (s *Service) readActiveImports(ctx context.Context, batch []*activeCheck) error {
	var ids []uuid.UUID
	for _, c := range batch {
		ids = append(ids, c.ids...)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	rows, err := s.db.Query(ctx, `SELECT id FROM import_jobs WHERE id = ANY($1) AND status IN ('preparing', 'running')`, slices.Compact(ids))
	if err != nil {
		return dbError(err, "import")
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return dbError(err, "import")
	}
	for _, c := range batch {
		c.active = make(map[uuid.UUID]bool, len(c.ids))
		for _, id := range c.ids {
			if slices.Contains(found, id) { // found: the few jobs this process's runners work on
				c.active[id] = true
			}
		}
	}
	return nil
}
