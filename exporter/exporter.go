// Package exporter runs export jobs: it sends each selected token of a job,
// through the vault's forwarding engine (the same sealing, allow-list,
// egress client and redaction as any forward), to another vault's import
// endpoint, and records the other vault's token id. Jobs and their
// per-token ledger live in PostgreSQL behind vault.ExportQueue, so a
// restarted process resumes and several replicas share the work through
// leases without sending a token twice.
//
// It is a package of its own rather than part of importer: the import
// worker drives Stripe's API with stripe-go and enumerates a provider's
// payment methods, while an export has no provider and sends through the
// vault's own forward path; the two share only the lease pattern.
package exporter

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/pace"
	"github.com/cardvault/cardvault/vault"
)

// DefaultLeaseTTL is how long an export lease lasts without renewal.
const DefaultLeaseTTL = time.Minute

// recordTimeout bounds the write of one attempt.
const recordTimeout = 10 * time.Second

// Config says how a Runner works. Service and Owner are required; zero
// values of the rest take the defaults named on each field.
type Config struct {
	Service vault.ExportQueue
	Owner   string // names this process in leases
	// Concurrency is how many sends run at once (default 4).
	Concurrency int
	// MaxAttempts is how many sends an item gets before it is given up
	// (default 5).
	MaxAttempts int
	// RetryBase and RetryCap bound the jittered exponential backoff between
	// attempts of an item (defaults 2s and 5m).
	RetryBase, RetryCap time.Duration
	// Poll is how often idle workers look for work (default 1s).
	Poll time.Duration
	// LeaseTTL is how long a lease lasts without a heartbeat (default
	// DefaultLeaseTTL).
	LeaseTTL time.Duration
	Logger   *slog.Logger
	// Metrics counts attempts by outcome; nil records nothing.
	Metrics *metrics.Exports
}

// validate fills the defaults and returns an error when a required value
// is missing.
func (c *Config) validate() error {
	if c.Service == nil || c.Owner == "" {
		return errors.New("exporter: Config.Service and Config.Owner are required")
	}
	defaults(&c.Concurrency, 4)
	defaults(&c.MaxAttempts, 5)
	defaults(&c.RetryBase, 2*time.Second)
	defaults(&c.RetryCap, 5*time.Minute)
	defaults(&c.Poll, time.Second)
	defaults(&c.LeaseTTL, DefaultLeaseTTL)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func defaults[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Runner runs export jobs until its context ends.
type Runner struct {
	cfg Config
	svc vault.ExportQueue
	log *slog.Logger
	// Waker's Wake makes every idle worker look for work now, e.g. right
	// after a job was created in this process.
	loop.Waker

	mu      sync.Mutex
	jobs    map[uuid.UUID]*job
	claimed loop.Claimed[vault.ExportWork] // leased in a batch, waiting for a sender
	held    map[heldKey]vault.ExportWork
	writing sync.WaitGroup // attempts being recorded
}

type heldKey struct{ job, token uuid.UUID }

// job is what this process keeps of a running job: how to send its items,
// and the send slots it reserved of the job's rate.
type job struct {
	setup vault.ExportSetup
	plan  plan
	pace  *pace.Pacer
}

// newPacer returns the pacer of job at rate sends a second
// (vault.DefaultExportRate when not above 0), on send slots reserved in
// the job's row, so that the rate holds across replicas.
func newPacer(svc vault.ExportQueue, job uuid.UUID, rate float64) *pace.Pacer {
	if rate <= 0 {
		rate = vault.DefaultExportRate
	}
	return pace.New(func(ctx context.Context, n int) (time.Duration, error) {
		return svc.ReserveExportSends(ctx, job, n)
	}, rate)
}

// New returns a Runner for cfg, or an error when cfg lacks a required value.
func New(cfg Config) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, svc: cfg.Service, log: cfg.Logger,
		jobs: map[uuid.UUID]*job{}, held: map[heldKey]vault.ExportWork{}}, nil
}

// Run sends items and ends finished jobs until ctx ends, then waits for the
// attempts being recorded and gives back its leases so that another
// process resumes at once. Failures are logged and retried at the next poll.
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	steps := []func(context.Context) bool{r.complete}
	for range r.cfg.Concurrency {
		steps = append(steps, r.sendOne)
	}
	for _, step := range steps {
		wg.Add(1)
		go func() { defer wg.Done(); loop.Poll(ctx, r.cfg.Poll, &r.Waker, step, nil) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.heartbeat(ctx) }()
	wg.Wait()
	r.writing.Wait() // attempts first: a lease given back before its attempt is written would be sent again
	releaseCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.svc.ReleaseExportLeases(releaseCtx, r.cfg.Owner); err != nil {
		r.log.Error("releasing export leases", "error", err)
	}
}

// heartbeat renews the leases of the items this process holds and forgets
// the jobs that ended (and their opened headers) until ctx ends.
func (r *Runner) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.svc.RenewExportLeases(ctx, r.cfg.Owner, r.heldList(), r.cfg.LeaseTTL); err != nil && ctx.Err() == nil {
			r.log.Error("renewing export leases", "error", err)
		}
		if err := r.dropEnded(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("dropping ended export jobs", "error", err)
		}
	}
}

// dropEnded forgets every cached job that is no longer running, whichever
// replica ended it. It returns a domain error when the database fails.
func (r *Runner) dropEnded(ctx context.Context) error {
	r.mu.Lock()
	ids := make([]uuid.UUID, 0, len(r.jobs))
	for id := range r.jobs {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	active, err := r.svc.ActiveExports(ctx, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if !active[id] {
			r.forget(id)
		}
	}
	return nil
}

// complete ends the jobs that have nothing pending; it reports whether it
// ended any.
func (r *Runner) complete(ctx context.Context) bool {
	done, err := r.svc.CompleteExports(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Error("completing exports", "error", err)
	}
	for _, j := range done {
		r.forget(j.ID)
		r.log.Info("export finished", "export_id", j.ID, "total", j.Total, "successes", j.Successes, "failures", j.Failures)
	}
	return len(done) > 0
}

// next returns the next leased item, claiming a batch of up to Concurrency
// items when none is left; false when nothing is due. Idle senders share a
// claim that found nothing for half a poll (loop.Claimed).
func (r *Runner) next(ctx context.Context) (vault.ExportWork, bool, error) {
	return r.claimed.Next(ctx, r.cfg.Poll/2, func(ctx context.Context) ([]vault.ExportWork, error) {
		items, err := r.svc.ClaimExportItems(ctx, r.cfg.Owner, r.cfg.Concurrency, r.cfg.LeaseTTL)
		r.mu.Lock()
		for _, w := range items {
			r.held[heldKey{w.JobID, w.TokenID}] = w
		}
		r.mu.Unlock()
		return items, err
	})
}

// Wake makes every idle worker look for work now, e.g. right after a job
// was created in this process: the senders claim again at once.
func (r *Runner) Wake() {
	r.claimed.Awake()
	r.Waker.Wake()
}

func (r *Runner) heldList() []vault.ExportWork {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]vault.ExportWork, 0, len(r.held))
	for _, w := range r.held {
		out = append(out, w)
	}
	return out
}

func (r *Runner) drop(w vault.ExportWork) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.held, heldKey{w.JobID, w.TokenID})
}

func (r *Runner) forget(id uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.jobs, id)
}

// job returns the cached job id, loading it on first use.
func (r *Runner) job(ctx context.Context, id uuid.UUID) (*job, error) {
	r.mu.Lock()
	j := r.jobs[id]
	r.mu.Unlock()
	if j != nil {
		return j, nil
	}
	setup, err := r.svc.ExportSetup(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := planFor(setup.Destination)
	if err != nil {
		return nil, err
	}
	j = &job{setup: setup, plan: p, pace: newPacer(r.svc, id, setup.RateLimit)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.jobs[id]; cur != nil {
		return cur, nil
	}
	r.jobs[id] = j
	return j, nil
}

// record writes the attempt at on w in the background, retrying while the
// database is unavailable: the send happened and must be written down
// rather than left leased.
func (r *Runner) record(ctx context.Context, w vault.ExportWork, at vault.ExportAttempt) {
	r.writing.Add(1)
	go func() {
		defer func() { r.drop(w); r.writing.Done() }()
		err := loop.Retry(ctx, isUnavailable, func(ctx context.Context) error {
			recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			defer cancel()
			return r.svc.RecordExportAttempt(recCtx, r.cfg.Owner, w, at)
		})
		if err == nil {
			r.cfg.Metrics.Items(attemptOutcome(at), 1)
		}
		if err != nil && !vault.IsExportEnded(err) {
			r.itemLog(w).Error("recording an export attempt", "error", err)
		}
	}()
}

// attemptOutcome is the metrics outcome of a recorded attempt: a pending
// item is retried.
func attemptOutcome(at vault.ExportAttempt) metrics.ItemOutcome {
	switch at.Status {
	case vault.ItemSucceeded:
		return metrics.ItemSucceeded
	case vault.ItemFailed:
		return metrics.ItemFailed
	}
	return metrics.ItemRetried
}

// giveBack releases w's lease without an outcome.
func (r *Runner) giveBack(ctx context.Context, w vault.ExportWork) {
	defer r.drop(w)
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := r.svc.ReleaseExportItem(relCtx, r.cfg.Owner, w); err != nil {
		r.itemLog(w).Error("releasing an export item", "error", err)
	}
}

func (r *Runner) itemLog(w vault.ExportWork) *slog.Logger {
	return r.log.With("export_id", w.JobID, "token_id", w.TokenID)
}

// isUnavailable reports a failure that passes by itself, such as the
// database failing over.
func isUnavailable(err error) bool { return vault.ErrorKind(err) == vault.KindUnavailable }
