// Package importer runs import jobs: it enumerates a Stripe account's card
// payment methods and drives Stripe's forward API into the vault's
// /cde-import, through github.com/stripe/stripe-go. Jobs and their
// per-payment-method ledger live in PostgreSQL behind vault.ImportQueue, so a
// restarted process resumes and several replicas share the work through
// leases.
package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// DefaultStripeAPIBase is Stripe's API.
const DefaultStripeAPIBase = "https://api.stripe.com"

// DefaultLeaseTTL is how long an import lease lasts without renewal.
const DefaultLeaseTTL = time.Minute

// Config says how a Runner drives Stripe. Service, Owner and PublicURL are
// required; zero values of the rest take the defaults named on each field.
type Config struct {
	Service vault.ImportQueue
	Owner   string // names this process in leases
	// PublicURL is the vault's public base URL (VAULT_PUBLIC_URL); Stripe
	// forwards to PublicURL + "/cde-import".
	PublicURL string
	// StripeAPIBase is Stripe's API base URL (VAULT_STRIPE_API_BASE);
	// DefaultStripeAPIBase when "".
	StripeAPIBase string
	// Rate is the Stripe requests per second of one job, across every
	// process working on it: each reserves its requests' slots in the job's
	// row (vault.ImportQueue.ReserveImportRequests). Default 20; a negative
	// rate turns throttling off.
	Rate float64
	// Concurrency is how many forwards run at once (default 4).
	Concurrency int
	// MaxAttempts is how many forwards an item gets before it is given up
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
	// HTTPClient talks to Stripe; a client with a 60 s timeout when nil.
	// Without a Transport it gets one that keeps a connection per forwarder
	// alive (http.DefaultTransport keeps two per host, so most forwards
	// would open a new connection).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Metrics counts item outcomes; nil records nothing.
	Metrics *metrics.Imports
}

// validate fills the defaults and returns an error naming a missing or bad
// required value.
func (c *Config) validate() error {
	if c.Service == nil || c.Owner == "" {
		return errors.New("importer: Config.Service and Config.Owner are required")
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("importer: public URL %q must be an absolute http(s) URL", c.PublicURL)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.StripeAPIBase == "" {
		c.StripeAPIBase = DefaultStripeAPIBase
	}
	c.StripeAPIBase = strings.TrimRight(c.StripeAPIBase, "/")
	defaults(&c.Rate, 20)
	defaults(&c.Concurrency, 4)
	defaults(&c.MaxAttempts, 5)
	defaults(&c.RetryBase, 2*time.Second)
	defaults(&c.RetryCap, 5*time.Minute)
	defaults(&c.Poll, time.Second)
	defaults(&c.LeaseTTL, DefaultLeaseTTL)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if c.HTTPClient.Transport == nil {
		hc := *c.HTTPClient
		hc.Transport = keepAliveTransport(c.Concurrency + 2) // the forwarders, preparation, and one spare
		c.HTTPClient = &hc
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// keepAliveTransport returns a transport like http.DefaultTransport that
// keeps up to conns idle connections per host.
func keepAliveTransport(conns int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = conns
	t.MaxIdleConns = max(t.MaxIdleConns, conns)
	return t
}

func defaults[T int | float64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Runner runs import jobs until its context ends.
type Runner struct {
	cfg Config
	svc vault.ImportQueue
	log *slog.Logger

	// Waker's Wake makes every idle worker look for work now, e.g. right
	// after a job was created in this process.
	loop.Waker

	mu sync.Mutex // guards clients
	// drained is whether the last claim found nothing due; itemsSettled
	// (buffered, one) wakes the complete loop when an item ends then.
	drained      atomic.Bool
	itemsSettled chan struct{}
	clients      map[uuid.UUID]*jobClient
	claimed      loop.Claimed[vault.ItemWork] // items leased in batches, waiting for a forwarder (claim.go)
	held         heldItems                    // items leased and not yet recorded or given back (claim.go)
	recorder     *recorder                    // attempts being written (record.go)
}

// Wake makes every idle worker look for work now, e.g. right after a job
// was created in this process: the forwarders claim again at once.
func (r *Runner) Wake() {
	r.claimed.Awake()
	r.Waker.Wake()
}

// New returns a Runner for cfg, or an error when cfg lacks a required value.
func New(cfg Config) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, svc: cfg.Service, log: cfg.Logger, itemsSettled: make(chan struct{}, 1),
		clients: map[uuid.UUID]*jobClient{}, recorder: newRecorder(cfg.Concurrency)}, nil
}

// Run prepares jobs, forwards their items and ends finished jobs until ctx
// ends, then waits for the attempts being recorded and gives back its
// leases so another process can resume at once.
// Failures are logged and retried on the next poll.
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	type stepper struct {
		step  func(context.Context) bool
		nudge <-chan struct{} // besides Wake; nil for none
	}
	steps := []stepper{{r.prepareOne, nil}, {r.complete, r.itemsSettled}}
	for range r.cfg.Concurrency {
		steps = append(steps, stepper{r.forwardOne, nil})
	}
	for _, l := range steps {
		wg.Add(1)
		go func() { defer wg.Done(); loop.Poll(ctx, r.cfg.Poll, &r.Waker, l.step, l.nudge) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.heartbeat(ctx) }()
	wg.Wait()
	r.awaitRecords() // attempts first: a lease given back before its attempt is written would be forwarded again
	releaseCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.svc.ReleaseImportLeases(releaseCtx, r.cfg.Owner); err != nil {
		r.log.Error("releasing import leases", "error", err)
	}
}

// heartbeat renews this process's leases (its preparations and the items
// it holds) until ctx ends.
func (r *Runner) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.svc.RenewImportLeases(ctx, r.cfg.Owner, r.held.list(), r.cfg.LeaseTTL); err != nil && ctx.Err() == nil {
			r.log.Error("renewing import leases", "error", err)
		}
		if err := r.dropEnded(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("dropping the credentials of ended imports", "error", err)
		}
	}
}

// dropEnded forgets the cached client, and with it the decrypted Stripe
// key, of every job that is no longer active, whichever replica ended it:
// a replica that did not finish a job keeps no key of it. It returns a
// domain error when the database fails.
func (r *Runner) dropEnded(ctx context.Context) error {
	ids := r.cachedJobs()
	if len(ids) == 0 {
		return nil
	}
	active, err := r.svc.ActiveImports(ctx, ids)
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
	done, err := r.svc.CompleteImports(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Error("completing imports", "error", err)
	}
	for _, j := range done {
		r.forget(j.ID)
		r.log.Info("import finished", "import_id", j.ID, "total", j.Total, "successes", j.Successes,
			"failures", j.Failures, "skipped", j.Skipped)
	}
	return len(done) > 0
}
