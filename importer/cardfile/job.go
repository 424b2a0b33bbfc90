package cardfile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
)

// DefaultBatchRows is how many rows a file import writes per transaction.
const DefaultBatchRows = 500

// DefaultDepth is how many batches of a file import are written at once:
// PostgreSQL runs one statement on one core, and a batch is sealed while
// others are written.
const DefaultDepth = 3

// WorkerConfig says how a Worker runs file import jobs. Queue and Owner are
// required; zero values of the rest take the defaults named on each field.
type WorkerConfig struct {
	Queue vault.FileImportQueue
	Owner string // names this process in leases
	// LeaseTTL is how long a job's lease lasts without renewal (default a minute).
	LeaseTTL time.Duration
	// Poll is how often an idle worker looks for a job (default 1s).
	Poll time.Duration
	// BatchRows is how many rows one transaction writes (default DefaultBatchRows).
	BatchRows int
	// Depth is how many batches are written at once (default
	// DefaultDepth); they commit in file order.
	Depth  int
	Logger *slog.Logger
	// AfterBatch, when set, is called after each committed batch with the
	// job and its last committed row (tests stop a worker there).
	AfterBatch func(job uuid.UUID, rowsDone int64)
}

// Worker runs file import jobs: it verifies a job's file (decrypting it to
// its end and counting its rows), then tokenizes its rows in batches, each
// committed with the job's resume point, so a run that stops (a crash, a
// lost lease) resumes after the last committed row on any replica.
type Worker struct {
	cfg WorkerConfig
	q   vault.FileImportQueue
	log *slog.Logger

	// Waker's Wake makes an idle worker look for a job now.
	loop.Waker
}

// NewWorker returns a Worker for cfg, or an error when cfg lacks Queue or Owner.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Queue == nil || cfg.Owner == "" {
		return nil, errors.New("cardfile: WorkerConfig.Queue and WorkerConfig.Owner are required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = DefaultBatchRows
	}
	if cfg.Depth <= 0 {
		cfg.Depth = DefaultDepth
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg, q: cfg.Queue, log: cfg.Logger}, nil
}

// Run runs file import jobs, one at a time, until ctx ends.
func (w *Worker) Run(ctx context.Context) {
	w.RunJob(ctx, uuid.Nil)
}

// RunJob runs the file import only (every file import when uuid.Nil)
// until ctx ends; a caller following one job cancels ctx once it ended.
func (w *Worker) RunJob(ctx context.Context, only uuid.UUID) {
	loop.Poll(ctx, w.cfg.Poll, &w.Waker, func(ctx context.Context) bool { return w.Step(ctx, only) }, nil)
}

// Step leases one file import (only that one, unless uuid.Nil) and runs it
// until it ends, the lease is lost or ctx ends. It reports whether it ran
// a job without an error, so that a failing one is retried at the next
// poll rather than at once.
func (w *Worker) Step(ctx context.Context, only uuid.UUID) bool {
	job, ok, err := w.q.ClaimFileImport(ctx, w.cfg.Owner, w.cfg.LeaseTTL, only)
	if err != nil && ctx.Err() == nil {
		w.log.Error("claiming a file import", "error", err)
	}
	if !ok {
		return false
	}
	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.heartbeat(jobCtx, cancel, job.JobID)
	err = w.run(jobCtx, job)
	lost := jobCtx.Err() != nil && ctx.Err() == nil // the heartbeat found the job ended or taken
	cancel()
	if lost {
		return true
	}
	w.settle(ctx, job, err)
	return err == nil
}

// heartbeat renews the job's lease until ctx ends; when the lease is lost
// (the job ended, another worker took it) it cancels the run.
func (w *Worker) heartbeat(ctx context.Context, cancel context.CancelFunc, job uuid.UUID) {
	t := time.NewTicker(w.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := w.q.RenewFileImport(ctx, w.cfg.Owner, job, w.cfg.LeaseTTL)
		if vault.IsImportEnded(err) {
			cancel()
			return
		}
		if err != nil && ctx.Err() == nil {
			w.log.Error("renewing a file import lease", "import_id", job, "error", err)
		}
	}
}

// settle ends a run: a file that cannot be read fails the job with the
// reason; another failure gives the lease back so the job is retried.
func (w *Worker) settle(ctx context.Context, job vault.FileImportWork, err error) {
	if err == nil || vault.IsImportEnded(err) {
		return
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ve := vault.AsError(err); ctx.Err() == nil && (ve.Kind == vault.KindInvalid || ve.Kind == vault.KindConflict) {
		w.log.Info("file import failed", "import_id", job.JobID, "code", ve.Code)
		if err := w.q.FailImport(bg, job.JobID, ve.Code+": "+ve.Message); err != nil && !vault.IsImportEnded(err) {
			w.log.Error("failing a file import", "import_id", job.JobID, "error", err)
		}
		return
	}
	if ctx.Err() == nil {
		w.log.Error("running a file import; it is retried", "import_id", job.JobID, "error", err)
	}
	if err := w.q.ReleaseFileImport(bg, w.cfg.Owner, job.JobID); err != nil {
		w.log.Error("releasing a file import", "import_id", job.JobID, "error", err)
	}
}

// run verifies a preparing job's file, then imports the rows after the
// last committed one and finishes the job.
func (w *Worker) run(ctx context.Context, job vault.FileImportWork) error {
	if job.Status == vault.ImportPreparing {
		total, err := w.count(ctx, job)
		if err != nil {
			return err
		}
		if err := w.q.StartFileImport(ctx, w.cfg.Owner, job.JobID, total); err != nil {
			return err
		}
		job.Status = vault.ImportRunning
	}
	rows, err := w.open(ctx, job)
	if err != nil {
		return err
	}
	p := newPipeline(ctx, w, job)
	defer p.stop()
	batch := make([]vault.FileRow, 0, w.cfg.BatchRows)
	for {
		r, err := rows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if int64(r.N) <= job.RowsDone {
			continue
		}
		batch = append(batch, vault.FileRow{N: int64(r.N), OldID: r.OldID, Input: r.Input, Err: r.Err})
		if len(batch) == w.cfg.BatchRows {
			if err := p.send(batch); err != nil {
				return err
			}
			batch = make([]vault.FileRow, 0, w.cfg.BatchRows)
		}
	}
	if len(batch) > 0 {
		if err := p.send(batch); err != nil {
			return err
		}
	}
	if err := p.drain(); err != nil {
		return err
	}
	_, err = w.q.FinishFileImport(ctx, w.cfg.Owner, job.JobID)
	return err
}

// pipeline writes up to Depth batches of one job at once; each batch
// follows the resume point of the one before, and they commit in order.
type pipeline struct {
	w       *Worker
	job     vault.FileImportWork // RowsDone: the last row of the last batch sent
	ctx     context.Context
	cancel  context.CancelFunc
	flights []flight
}

// flight is a batch being written.
type flight struct {
	last int64
	done chan error
}

func newPipeline(ctx context.Context, w *Worker, job vault.FileImportWork) *pipeline {
	pctx, cancel := context.WithCancel(ctx)
	return &pipeline{w: w, job: job, ctx: pctx, cancel: cancel}
}

// send starts writing batch, after waiting for the oldest batch in flight
// when Depth are; it returns the first error of a batch.
func (p *pipeline) send(batch []vault.FileRow) error {
	if len(p.flights) == p.w.cfg.Depth {
		if err := p.settleOldest(); err != nil {
			return err
		}
	}
	work := p.job
	f := flight{last: batch[len(batch)-1].N, done: make(chan error, 1)}
	p.job.RowsDone = f.last
	go func() {
		_, err := p.w.q.ImportFileRows(p.ctx, p.w.cfg.Owner, work, batch, p.w.cfg.LeaseTTL)
		f.done <- err
	}()
	p.flights = append(p.flights, f)
	return nil
}

// settleOldest waits for the oldest batch in flight; on its error the
// batches after it are called off (they cannot commit without it).
func (p *pipeline) settleOldest() error {
	f := p.flights[0]
	p.flights = p.flights[1:]
	if err := <-f.done; err != nil {
		p.stop()
		return err
	}
	if p.w.cfg.AfterBatch != nil {
		p.w.cfg.AfterBatch(p.job.JobID, f.last)
	}
	return nil
}

// drain waits for every batch in flight.
func (p *pipeline) drain() error {
	for len(p.flights) > 0 {
		if err := p.settleOldest(); err != nil {
			return err
		}
	}
	return nil
}

// stop calls off the batches in flight and waits for them.
func (p *pipeline) stop() {
	p.cancel()
	for _, f := range p.flights {
		<-f.done
	}
	p.flights = nil
}

// open returns the rows of the job's file, decrypted as they are read.
func (w *Worker) open(ctx context.Context, job vault.FileImportWork) (RowReader, error) {
	clear, err := w.q.OpenPGPMessage(ctx, vault.Actor{TenantID: job.TenantID, ClientAddr: "importer"}, w.q.ImportFile(ctx, job.JobID))
	if err != nil {
		return nil, err
	}
	return NewReader(clear, Format(job.Format))
}

// count decrypts the whole file and counts its rows, so that a damaged,
// truncated or foreign file fails the job before any row is imported (an
// OpenPGP message's integrity is known only at its end) and progress has a
// total.
func (w *Worker) count(ctx context.Context, job vault.FileImportWork) (int64, error) {
	rows, err := w.open(ctx, job)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		_, err := rows.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		n++
	}
}
