package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault"
)

// This file is the job side of file imports (provider file in import_jobs):
// the encrypted file stored in chunks, the lease a worker holds on the job
// while it runs it, and the mapping. The rows themselves are written by
// ImportFileRows (fileimport_rows.go).

// fileChunkSize is the size of one stored chunk of an encrypted file.
const fileChunkSize = 1 << 20

// CreateFileImport stores the encrypted file in.File (read to its end, at
// most in.MaxBytes) for the actor's tenant and starts a file import job
// that any replica's worker runs, and audits. It returns a KindInvalid error
// for an unknown format or an empty file, KindTooLarge (body_too_large) for
// a file over in.MaxBytes, a KindConflict error naming the job when one is
// already preparing or running, and a domain error when reading in.File or
// the database fails.
func (s *Service) CreateFileImport(ctx context.Context, a vault.Actor, in vault.CreateFileImportInput) (vault.ImportJob, error) {
	switch in.Format {
	case "stripe-json", "stripe-csv", "jsonl":
	default:
		return vault.ImportJob{}, vault.InvalidParam(vault.CodeParameterInvalid, "format", "format must be stripe-json, stripe-csv or jsonl")
	}
	now := s.clock()
	job := vault.ImportJob{ID: uuid.New(), TenantID: a.TenantID, Provider: vault.ProviderFile, Status: vault.ImportPreparing,
		FileFormat: in.Format, CreatedAt: now, UpdatedAt: now}
	err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
		if err := activeImportConflict(ctx, tx, a.TenantID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO import_jobs (id, tenant_id, provider, status, file_format, created_at, updated_at)
			VALUES ($1, $2, 'file', 'preparing', $3, $4, $4)`, job.ID, a.TenantID, in.Format, now); err != nil {
			return err
		}
		size, err := storeFileChunks(ctx, tx, job.ID, in.File, in.MaxBytes)
		if err != nil {
			return err
		}
		job.FileSize = size
		if _, err := tx.Exec(ctx, `UPDATE import_jobs SET file_size = $2 WHERE id = $1`, job.ID, size); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionImportCreate, uuid.Nil,
			map[string]any{"import_id": job.ID, "provider": job.Provider, "format": in.Format, "bytes": size}))
	})
	return job, err
}

// storeFileChunks copies r into import_file_chunks in fileChunkSize chunks
// and returns its size; more than max bytes is a KindTooLarge error.
func storeFileChunks(ctx context.Context, tx pgx.Tx, jobID uuid.UUID, r io.Reader, max int64) (int64, error) {
	if max <= 0 {
		max = vault.DefaultMaxImportFileBytes
	}
	lr := io.LimitReader(r, max+1)
	buf := make([]byte, fileChunkSize)
	var size int64
	for seq := 0; ; seq++ {
		n, err := io.ReadFull(lr, buf)
		if n > 0 {
			size += int64(n)
			if size > max {
				return 0, &vault.Error{Kind: vault.KindTooLarge, Code: vault.CodeBodyTooLarge,
					Message: fmt.Sprintf("the file is over the limit of %d bytes", max)}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO import_file_chunks (job_id, seq, data) VALUES ($1, $2, $3)`,
				jobID, seq, buf[:n]); err != nil {
				return 0, err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return 0, vault.AsError(fmt.Errorf("read the file: %w", err))
		}
	}
	if size == 0 {
		return 0, vault.InvalidParam(vault.CodeParameterInvalid, "file", "the file is empty")
	}
	return size, nil
}

// ClaimFileImport leases, for owner until ttl from now, the oldest active
// file import no live worker holds (only job only, unless uuid.Nil), and
// returns where it stands; false when there is none. It returns a domain
// error when the database fails.
func (s *Service) ClaimFileImport(ctx context.Context, owner string, ttl time.Duration, only uuid.UUID) (vault.FileImportWork, bool, error) {
	now := s.clock()
	var w vault.FileImportWork
	err := s.db.QueryRow(ctx, `
		UPDATE import_jobs SET lease_owner = $1, lease_until = $2, started_at = COALESCE(started_at, $3), updated_at = $3
		WHERE id = (SELECT id FROM import_jobs
		            WHERE provider = 'file' AND status IN ('preparing', 'running') AND ($4::uuid IS NULL OR id = $4)
		              AND (lease_until IS NULL OR lease_until < $3 OR lease_owner = $1)
		            ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id, tenant_id, file_format, status, rows_done`,
		owner, now.Add(ttl), now, nullUUID(only)).Scan(&w.JobID, &w.TenantID, &w.Format, &w.Status, &w.RowsDone)
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.FileImportWork{}, false, nil
	}
	if err != nil {
		return vault.FileImportWork{}, false, dbError(err, "import")
	}
	s.fileOrder.start(w.JobID, w.RowsDone)
	return w, true, nil
}

// RenewFileImport extends owner's lease on the file import jobID by ttl.
// It returns vault.ErrImportEnded (IsImportEnded) when the job ended or
// owner lost it.
func (s *Service) RenewFileImport(ctx context.Context, owner string, jobID uuid.UUID, ttl time.Duration) error {
	tag, err := s.db.Exec(ctx, `UPDATE import_jobs SET lease_until = $3
		WHERE id = $1 AND lease_owner = $2 AND status IN ('preparing', 'running')`, jobID, owner, s.clock().Add(ttl))
	if err != nil {
		return dbError(err, "import")
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrImportEnded
	}
	return nil
}

// ReleaseFileImport gives back owner's lease on jobID, so another worker
// may take it at once. It returns a domain error when the database fails.
func (s *Service) ReleaseFileImport(ctx context.Context, owner string, jobID uuid.UUID) error {
	_, err := s.db.Exec(ctx, `UPDATE import_jobs SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2`, jobID, owner)
	return dbError(err, "import")
}

// StartFileImport moves owner's verified preparing file import to running
// with total rows. It returns vault.ErrImportEnded (IsImportEnded) when the
// job ended or owner lost it.
func (s *Service) StartFileImport(ctx context.Context, owner string, jobID uuid.UUID, total int64) error {
	tag, err := s.db.Exec(ctx, `UPDATE import_jobs SET status = 'running', total = $3, updated_at = $4
		WHERE id = $1 AND lease_owner = $2 AND status = 'preparing'`, jobID, owner, total, s.clock())
	if err != nil {
		return dbError(err, "import")
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrImportEnded
	}
	return nil
}

// FinishFileImport ends owner's running file import as finished: its file
// is deleted, and the import.finished event queued. It returns
// vault.ErrImportEnded (IsImportEnded) when the job ended or owner lost it.
func (s *Service) FinishFileImport(ctx context.Context, owner string, jobID uuid.UUID) (vault.ImportJob, error) {
	var job vault.ImportJob
	err := s.inTx(ctx, "import", func(tx pgx.Tx) error {
		var tenantID uuid.UUID
		err := tx.QueryRow(ctx, `SELECT tenant_id FROM import_jobs WHERE id = $1 AND lease_owner = $2 AND status = 'running'
			FOR UPDATE`, jobID, owner).Scan(&tenantID)
		if errors.Is(err, pgx.ErrNoRows) {
			return vault.ErrImportEnded
		}
		if err != nil {
			return err
		}
		job, err = s.endImport(ctx, tx, vault.Actor{TenantID: tenantID, ClientAddr: "importer"}, jobID, vault.ImportFinished, "")
		return err
	})
	if err == nil {
		s.fileOrder.forget(jobID)
		s.wakeWebhooks()
	}
	return job, err
}

// ImportFile returns a reader of the encrypted file of the active file
// import jobID, read from the database a chunk at a time. Its Read returns
// vault.ErrImportEnded once the job has ended and its file is deleted, and
// a domain error when the database fails.
func (s *Service) ImportFile(ctx context.Context, jobID uuid.UUID) io.Reader {
	return &chunkReader{ctx: ctx, s: s, job: jobID}
}

// chunkReader reads import_file_chunks in order.
type chunkReader struct {
	ctx context.Context
	s   *Service
	job uuid.UUID
	seq int
	buf []byte
	eof bool
}

// Read returns the next bytes of the file.
func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.eof {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// next loads the next chunk; after the last one it sets eof.
func (c *chunkReader) next() error {
	var data []byte
	var last bool
	err := c.s.db.QueryRow(c.ctx, `
		SELECT c.data, NOT EXISTS (SELECT 1 FROM import_file_chunks n WHERE n.job_id = $1 AND n.seq = $2 + 1)
		FROM import_file_chunks c JOIN import_jobs j ON j.id = c.job_id
		WHERE c.job_id = $1 AND c.seq = $2 AND j.status IN ('preparing', 'running')`, c.job, c.seq).Scan(&data, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return vault.ErrImportEnded
	}
	if err != nil {
		return dbError(err, "import")
	}
	c.seq++
	c.buf, c.eof = data, last
	return nil
}

// ImportMapping calls each with every line of the mapping of the actor's
// tenant's file import id, in row order: the token's current fingerprint
// and masked number, or why the row failed. It returns KindNotFound for an
// unknown or foreign job and for a job that is not a file import, each's
// error, and a domain error when the database
// fails.
func (s *Service) ImportMapping(ctx context.Context, a vault.Actor, id uuid.UUID, each func(vault.MappingLine) error) error {
	job, err := s.GetImport(ctx, a, id)
	if err != nil {
		return err
	}
	if job.Provider != vault.ProviderFile {
		return vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "import %s is not a file import: it has no mapping", id)
	}
	rows, err := s.db.Query(ctx, `
		SELECT r.row_number, r.old_id, r.status, r.reason, t.id, t.fingerprint, t.iin, t.last_four, t.pan_length
		FROM import_file_rows r LEFT JOIN tokens t ON t.id = r.token_id AND t.tenant_id = $2
		WHERE r.job_id = $1 ORDER BY r.row_number`, id, a.TenantID)
	if err != nil {
		return dbError(err, "import")
	}
	defer rows.Close()
	for rows.Next() {
		var l vault.MappingLine
		var tokenID *uuid.UUID
		var iin, lastFour *string
		var panLen *int16
		if err := rows.Scan(&l.Row, &l.OldID, &l.Status, &l.Reason, &tokenID, &l.Fingerprint, &iin, &lastFour, &panLen); err != nil {
			return dbError(err, "import")
		}
		if tokenID != nil {
			l.TokenID = *tokenID
			l.Masked = vault.Token{IIN: *iin, LastFour: *lastFour, PANLength: int(*panLen)}.MaskedAccountNumber()
		}
		if err := each(l); err != nil {
			return err
		}
	}
	return dbError(rows.Err(), "import")
}

// listFileRows is ListImportItems for a file import: its rows as ledger
// items, seq the row number, payment_method the card's id in the file.
func (s *Service) listFileRows(ctx context.Context, id uuid.UUID, status vault.ItemStatus, limit int, after int64) ([]vault.ImportItem, error) {
	var want []string
	switch status {
	case vault.ItemSucceeded:
		want = []string{string(vault.FileRowCreated), string(vault.FileRowExisting)}
	case vault.ItemFailed:
		want = []string{string(vault.FileRowFailed)}
	case vault.ItemPending, vault.ItemSkipped:
		return nil, nil
	}
	rows, err := s.db.Query(ctx, `
		SELECT r.row_number, r.old_id, r.status, r.reason, r.token_id, j.updated_at
		FROM import_file_rows r JOIN import_jobs j ON j.id = r.job_id
		WHERE r.job_id = $1 AND ($2::text[] IS NULL OR r.status = ANY($2)) AND r.row_number > $3
		ORDER BY r.row_number LIMIT $4`, id, want, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.ImportItem, error) {
		var it vault.ImportItem
		var st string
		var token *uuid.UUID
		err := r.Scan(&it.Seq, &it.PaymentMethod, &st, &it.LastError, &token, &it.UpdatedAt)
		it.Status, it.Attempts = vault.ItemSucceeded, 1
		if st == string(vault.FileRowFailed) {
			it.Status = vault.ItemFailed
		}
		if token != nil {
			it.TokenID = *token
		}
		return it, err
	})
}
