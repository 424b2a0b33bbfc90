package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// fileImportActor is who a file import's rows are written as: the importer,
// which may create tokens and, for a business key whose card changed,
// update them, as a Stripe import's job key may.
func fileImportActor(tenantID uuid.UUID) vault.Actor {
	return vault.Actor{TenantID: tenantID, ClientAddr: "importer",
		Scopes: []vault.Scope{vault.ScopeTokensCreate, vault.ScopeTokensUpdate}}
}

// fileRow is one row of a batch on its way to the database.
type fileRow struct {
	vault.FileRow
	card   card.Card
	row    tokenRow
	nt     *newToken // nil when the row failed before the write
	status vault.FileRowStatus
	token  uuid.UUID
	reason string
}

// ImportFileRows tokenizes a batch of rows of owner's running file import
// (the rows after w.RowsDone, in file order) and writes, in one
// transaction and one commit, every new token with its audit and webhook
// events (one multi-row statement, as concurrent tokenize requests share),
// each row's ledger line, the job's counts and its resume point (the last
// row of the batch), and renews owner's lease by ttl. A row that is
// malformed or holds invalid card data fails alone, in the ledger, with a
// reason that never quotes it; a row whose business key already has a token
// brings that token up to date as /cde-import does. It returns the batch's
// counts, vault.ErrImportEnded (IsImportEnded) when the job ended, owner
// lost it, or its resume point is no longer w.RowsDone (another worker
// wrote these rows), and a domain error when the keys or the database fail.
func (s *Service) ImportFileRows(ctx context.Context, owner string, w vault.FileImportWork, rows []vault.FileRow, ttl time.Duration) (vault.FileRowCounts, error) {
	if len(rows) == 0 {
		return vault.FileRowCounts{}, nil
	}
	a := fileImportActor(w.TenantID)
	tk, err := s.keys.get(ctx, w.TenantID)
	if err != nil {
		return vault.FileRowCounts{}, err
	}
	for attempt := 1; ; attempt++ {
		batch, err := s.prepareFileRows(a, tk, rows)
		if err != nil {
			return vault.FileRowCounts{}, err
		}
		counts, err := s.writeFileRows(ctx, a, tk, owner, w, batch, ttl)
		switch {
		case err == nil:
			s.afterFileRows(w.TenantID, batch)
			return counts, nil
		case !isSealingKeyViolation(err):
			return vault.FileRowCounts{}, err
		case attempt == maxSealAttempts:
			return vault.FileRowCounts{}, keysChanging(err)
		}
		// The key that sealed the batch was retired meanwhile: seal again.
		if tk, err = s.newerKeys(w.TenantID, tk); err != nil {
			return vault.FileRowCounts{}, err
		}
	}
}

// prepareFileRows validates and seals each row; a row of its own error is
// marked failed.
func (s *Service) prepareFileRows(a vault.Actor, tk *tenantKeys, rows []vault.FileRow) ([]*fileRow, error) {
	out := make([]*fileRow, len(rows))
	for i, r := range rows {
		fr := &fileRow{FileRow: r}
		out[i] = fr
		if err := s.prepareFileRow(a, tk, fr); err != nil {
			ve := vault.AsError(err)
			if !rowOwnError(ve) {
				return nil, err
			}
			fr.fail(ve)
		}
	}
	return out, nil
}

// prepareFileRow parses, fingerprints and seals one row as Tokenize does.
func (s *Service) prepareFileRow(a vault.Actor, tk *tenantKeys, fr *fileRow) error {
	if fr.Err != nil {
		return fr.Err
	}
	c, err := card.ParseCard(fr.Input.Card)
	if err != nil {
		return err
	}
	if err := checkAttributes(fr.Input.BusinessKey, fr.Input.Metadata); err != nil {
		return err
	}
	fp, fpKey, err := tk.fingerprint(c.PAN)
	if err != nil {
		return err
	}
	row, err := s.newTokenRow(tk, a.TenantID, fr.Input, c, fp, fpKey)
	if err != nil {
		return err
	}
	tok, err := s.masked(tk, row)
	if err != nil {
		return err
	}
	fr.card, fr.row = c, row
	fr.nt, err = s.prepareNewToken(a, tk, row, tok)
	return err
}

// rowOwnError reports whether ve is a row's own fault (invalid card data or
// attributes, a conflict with the token its business key names) rather than
// the vault's.
func rowOwnError(ve *vault.Error) bool {
	switch ve.Kind {
	case vault.KindInvalid, vault.KindConflict, vault.KindBadRequest, vault.KindForbidden:
		return true
	}
	return false
}

// fail marks the row failed for ve, whose message never quotes card data.
func (fr *fileRow) fail(ve *vault.Error) {
	fr.nt, fr.status, fr.token = nil, vault.FileRowFailed, uuid.Nil
	fr.reason = card.MaskPANs(ve.Code + ": " + ve.Message)
}

// writeFileRows is ImportFileRows' transaction. The batch's rows are
// written first, so that a worker's next batches write theirs meanwhile on
// other connections (PostgreSQL runs each statement on one core); then the
// job's counts and resume point, only once the batch before has issued its
// own (fileBatchOrder): its lock of the job waits for the batch before to
// commit and finds its resume point, so batches commit in file order, each whole
// or not at all, and a batch whose predecessor failed, or whose job another
// worker took, writes nothing.
func (s *Service) writeFileRows(ctx context.Context, a vault.Actor, tk *tenantKeys, owner string, w vault.FileImportWork,
	batch []*fileRow, ttl time.Duration) (vault.FileRowCounts, error) {
	var counts vault.FileRowCounts
	last := batch[len(batch)-1].N
	err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
		if err := s.insertFileTokens(ctx, tx, a, tk, batch); err != nil {
			return err
		}
		counts = countFileRows(batch)
		if err := insertFileRowLines(ctx, tx, w.JobID, batch); err != nil {
			return err
		}
		if err := s.fileOrder.await(ctx, w.JobID, w.RowsDone); err != nil {
			return err
		}
		// The lock waits for the batch before to commit, then reads the job
		// as it left it (READ COMMITTED reads the newest version of a row it
		// locks), so the resume point checked is the one that batch wrote.
		// NO KEY UPDATE: the ledger lines' check of their job (migration
		// 028) holds KEY SHARE on the job row in every batch in flight,
		// which FOR UPDATE would wait for.
		var done int64
		var leaseOwner *string
		var status string
		err := tx.QueryRow(ctx, `SELECT rows_done, lease_owner, status FROM import_jobs WHERE id = $1 FOR NO KEY UPDATE`,
			w.JobID).Scan(&done, &leaseOwner, &status)
		s.fileOrder.issued(w.JobID, last)
		if err != nil {
			return err
		}
		if done != w.RowsDone || leaseOwner == nil || *leaseOwner != owner || status != string(vault.ImportRunning) {
			return vault.ErrImportEnded
		}
		_, err = tx.Exec(ctx, `
			UPDATE import_jobs SET rows_done = $2, attempts = attempts + $3, successes = successes + $4,
			       failures = failures + $5, lease_until = $6, updated_at = $7
			WHERE id = $1`,
			w.JobID, last, int64(len(batch)), counts.Created+counts.Existing, counts.Failed,
			s.clock().Add(ttl), s.clock())
		return err
	})
	return counts, err
}

// fileBatchOrder lets a file import's batch lock its job only after the
// batch before it has: per job, the resume point whose lock was taken
// last. It orders the batches of this process's worker; the database's
// check of the resume point is what keeps any two writers (replicas)
// from both committing a batch.
type fileBatchOrder struct {
	mu   sync.Mutex
	jobs map[uuid.UUID]*fileJobOrder
}

type fileJobOrder struct {
	issued int64         // the resume point of the last update issued
	moved  chan struct{} // closed and replaced when issued moves
}

// job returns id's order, made on first use.
func (o *fileBatchOrder) job(id uuid.UUID) *fileJobOrder {
	if o.jobs == nil {
		o.jobs = map[uuid.UUID]*fileJobOrder{}
	}
	j := o.jobs[id]
	if j == nil {
		j = &fileJobOrder{issued: -1, moved: make(chan struct{})}
		o.jobs[id] = j
	}
	return j
}

// start records that a worker (re)starts job id after its committed resume
// point done: its first batch goes at once.
func (o *fileBatchOrder) start(id uuid.UUID, done int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	j := o.job(id)
	j.issued = done
	close(j.moved)
	j.moved = make(chan struct{})
}

// await returns once the update of the batch ending at prev was issued,
// or ctx's error; a worker that gave up on an earlier batch cancels ctx.
func (o *fileBatchOrder) await(ctx context.Context, id uuid.UUID, prev int64) error {
	for {
		o.mu.Lock()
		j := o.job(id)
		issued, moved := j.issued, j.moved
		o.mu.Unlock()
		if issued >= prev || issued < 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		}
	}
}

// issued records that the update of the batch ending at last was issued.
func (o *fileBatchOrder) issued(id uuid.UUID, last int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	j := o.job(id)
	if last > j.issued {
		j.issued = last
	}
	close(j.moved)
	j.moved = make(chan struct{})
}

// forget drops job id's order once its worker is done with it.
func (o *fileBatchOrder) forget(id uuid.UUID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.jobs, id)
}

// insertFileTokens writes the batch's new tokens in one statement, then
// brings up to date, one by one, the tokens of the rows whose business key
// was taken.
func (s *Service) insertFileTokens(ctx context.Context, tx pgx.Tx, a vault.Actor, tk *tenantKeys, batch []*fileRow) error {
	var nts []*newToken
	for _, fr := range batch {
		if fr.nt != nil {
			nts = append(nts, fr.nt)
		}
	}
	if len(nts) > 0 {
		if err := s.insertTokensTx(ctx, tx, nts); err != nil {
			return err
		}
	}
	for _, fr := range batch {
		if fr.nt == nil {
			continue
		}
		if fr.nt.inserted {
			fr.status, fr.token = vault.FileRowCreated, fr.row.ID
			continue
		}
		out, enqueued, err := s.reconcile(ctx, tx, a, tk, fr.row, fr.card)
		if err != nil {
			ve := vault.AsError(err)
			if !rowOwnError(ve) || ve.Err != nil {
				return err
			}
			fr.fail(ve)
			continue
		}
		fr.nt.enqueued = enqueued
		fr.status, fr.token = vault.FileRowExisting, out.ID
	}
	return nil
}

// countFileRows sums the batch's outcomes.
func countFileRows(batch []*fileRow) vault.FileRowCounts {
	var c vault.FileRowCounts
	for _, fr := range batch {
		switch fr.status {
		case vault.FileRowCreated:
			c.Created++
		case vault.FileRowExisting:
			c.Existing++
		default:
			c.Failed++
		}
	}
	return c
}

// insertFileRowLines writes the batch's ledger lines in one statement.
func insertFileRowLines(ctx context.Context, tx pgx.Tx, jobID uuid.UUID, batch []*fileRow) error {
	ns, ids, statuses, tokens, reasons := make([]int64, len(batch)), make([]string, len(batch)),
		make([]string, len(batch)), make([]*uuid.UUID, len(batch)), make([]string, len(batch))
	for i, fr := range batch {
		ns[i], ids[i], statuses[i], reasons[i] = fr.N, fr.OldID, string(fr.status), fr.reason
		if fr.token != uuid.Nil {
			tokens[i] = &fr.token
		}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO import_file_rows (job_id, row_number, old_id, status, token_id, reason)
		SELECT $1, n, old, st, tok, why FROM unnest($2::bigint[], $3::text[], $4::text[], $5::uuid[], $6::text[])
		AS u(n, old, st, tok, why)
		ON CONFLICT DO NOTHING`, jobID, ns, ids, statuses, tokens, reasons)
	return err
}

// afterFileRows counts the batch's sealed events on the key that sealed
// them and wakes the webhook deliverer when one was enqueued.
func (s *Service) afterFileRows(tenantID uuid.UUID, batch []*fileRow) {
	woke := false
	for _, fr := range batch {
		if fr.nt != nil && fr.nt.enqueued && fr.status == vault.FileRowCreated {
			s.usage.add(tenantID, fr.nt.keyID)
			woke = true
		}
		if fr.nt != nil && fr.nt.enqueued {
			woke = true
		}
	}
	if woke {
		s.wakeWebhooks()
	}
}
