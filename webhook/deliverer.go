package webhook

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// The deliverer's defaults.
const (
	DefaultPoll        = time.Second     // how often to look for due events without a wake-up
	DefaultPerTenant   = 5               // events of one tenant claimed at a time
	DefaultConcurrency = 8               // tenants sent to at once
	DefaultPerEndpoint = 2               // tenants sent to one endpoint URL at once
	DefaultLease       = 5 * time.Minute // covers one tenant's claimed events all timing out
)

// maxAnswer is how much of a receiver's answer is read (and discarded).
const maxAnswer = 64 << 10

// Doer sends one HTTP request: the egress client (NewClient), or any
// *http.Client in tests.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Deliverer sends the vault's webhook events. Several may run at once, in
// one process or in several replicas: each attempt is claimed under a lease
// first, so no attempt is sent twice. Delivery is at least once: a receiver
// that answers too late, or a deliverer that dies after sending, makes the
// event go out again, so receivers de-duplicate by event id.
//
// Tenants are served fairly: each claim takes a few events of each tenant
// with due events, every tenant is sent to on its own (a slow endpoint
// holds only its own tenant's turn), an endpoint URL is sent to by at most
// DefaultPerEndpoint tenants at once, and an endpoint that keeps timing out
// has its circuit opened (its events wait) for a growing cooldown.
type Deliverer struct {
	svc         vault.WebhookOutbox
	client      Doer
	log         *slog.Logger
	owner       string
	poll        time.Duration
	perTenant   int
	concurrency int
	perEndpoint int
	lease       time.Duration
	retry       RetryPolicy
	jitter      func() float64
	metrics     *metrics.Webhooks // nil records nothing
	breaker     *breaker
}

// Option tunes a Deliverer.
type Option func(*Deliverer)

// WithPoll sets how often the deliverer looks for due events when nothing
// wakes it (DefaultPoll).
func WithPoll(d time.Duration) Option { return func(x *Deliverer) { x.poll = d } }

// WithRetry sets the retry policy (DefaultRetry).
func WithRetry(p RetryPolicy) Option { return func(x *Deliverer) { x.retry = p } }

// WithMetrics records every delivery attempt's outcome and latency in m.
func WithMetrics(m *metrics.Webhooks) Option { return func(x *Deliverer) { x.metrics = m } }

// WithConcurrency sets how many tenants are sent to at once
// (DefaultConcurrency) and how many of them may share one endpoint URL
// (DefaultPerEndpoint).
func WithConcurrency(tenants, perEndpoint int) Option {
	return func(x *Deliverer) { x.concurrency, x.perEndpoint = max(tenants, 1), max(perEndpoint, 1) }
}

// WithBreaker sets how many timeouts in a row open an endpoint's circuit
// (DefaultBreakAfter) and how long it first stays open
// (DefaultBreakCooldown, doubling with each reopening up to 30 minutes).
func WithBreaker(after int, cooldown time.Duration) Option {
	return func(x *Deliverer) { x.breaker = newBreaker(max(after, 1), cooldown) }
}

// NewDeliverer returns a deliverer of svc's outbox that sends with client
// (NewClient makes the guarded one), logs to log and names itself owner in
// its leases (a process name such as host/pid; a random suffix keeps two
// deliverers of one process apart).
func NewDeliverer(svc vault.WebhookOutbox, client Doer, log *slog.Logger, owner string, opts ...Option) *Deliverer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Deliverer{svc: svc, client: client, log: log, owner: owner + "/" + uuid.NewString()[:8],
		poll: DefaultPoll, perTenant: DefaultPerTenant, concurrency: DefaultConcurrency, perEndpoint: DefaultPerEndpoint,
		lease: DefaultLease, retry: DefaultRetry, jitter: randFloat, breaker: newBreaker(DefaultBreakAfter, DefaultBreakCooldown)}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Run delivers due events until ctx ends: at once when this process
// commits an event, otherwise every poll interval. Failures are logged and
// retried on the next pass.
func (d *Deliverer) Run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		wake := d.svc.WebhookEnqueued()
		if _, err := d.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("delivering webhooks", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// DeliverDue makes one attempt at every event due now (but those of
// endpoints whose circuit is open) and returns how many attempts it made.
// Each tenant is sent to on its own, up to the concurrency at once: while
// one tenant's endpoint is slow, other tenants' events keep being claimed
// and sent, new ones included. It returns a domain error when the database
// fails.
func (d *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	r := &round{d: d, running: map[uuid.UUID]string{}, perURL: map[string]int{}, done: make(chan sent, d.concurrency)}
	return r.run(ctx)
}

// round is one DeliverDue: the tenants being sent to and what came back.
type round struct {
	d       *Deliverer
	running map[uuid.UUID]string // tenant → the URL it is sent to
	perURL  map[string]int       // URL → tenants being sent to it
	done    chan sent
	total   int
}

// sent is what sending to one tenant did.
type sent struct {
	tenant   uuid.UUID
	url      string
	attempts int
	unsent   []string
}

// run claims and dispatches until nothing is due and nothing runs.
func (r *round) run(ctx context.Context) (int, error) {
	var err error
	for {
		started := 0
		if ctx.Err() == nil && err == nil && len(r.running) < r.d.concurrency {
			started, err = r.claim(ctx)
		}
		if started > 0 {
			continue
		}
		if len(r.running) == 0 {
			return r.total, err
		}
		r.wait(ctx)
	}
}

// wait returns once a tenant is done, an event is committed in this
// process, or a poll interval passed (other replicas' events, retries).
func (r *round) wait(ctx context.Context) {
	wake := r.d.svc.WebhookEnqueued()
	t := time.NewTimer(r.d.poll)
	defer t.Stop()
	select {
	case s := <-r.done:
		r.finish(s)
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
		r.finish(<-r.done)
	}
}

// finish takes back a tenant's turn.
func (r *round) finish(s sent) {
	delete(r.running, s.tenant)
	if r.perURL[s.url]--; r.perURL[s.url] <= 0 {
		delete(r.perURL, s.url)
	}
	r.total += s.attempts
	r.d.release(s.unsent)
}

// claim claims due events of tenants not being sent to, bound for
// endpoints with room and a closed circuit, and starts sending to each
// tenant; it returns how many tenants it started.
func (r *round) claim(ctx context.Context) (int, error) {
	c := vault.EventClaim{Tenants: r.d.concurrency - len(r.running), PerTenant: r.d.perTenant,
		SkipURLs: r.d.breaker.open(r.d.svc.Now())}
	for t := range r.running {
		c.SkipTenants = append(c.SkipTenants, t)
	}
	for u, n := range r.perURL {
		if n >= r.d.perEndpoint {
			c.SkipURLs = append(c.SkipURLs, u)
		}
	}
	events, err := r.d.svc.ClaimWebhookEvents(ctx, r.d.owner, c, r.d.lease)
	if err != nil {
		return 0, err
	}
	started := 0
	for _, evs := range byTenant(events) {
		if r.start(ctx, evs) {
			started++
		}
	}
	return started, nil
}

// start sends a tenant's events on their own goroutine, or releases them
// when their endpoint already has its share; it reports whether it started.
func (r *round) start(ctx context.Context, evs []vault.ClaimedEvent) bool {
	tenant, url := evs[0].TenantID, evs[0].URL
	if r.perURL[url] >= r.d.perEndpoint || len(r.running) >= r.d.concurrency {
		r.d.release(ids(evs))
		return false
	}
	r.running[tenant] = url
	r.perURL[url]++
	go func() {
		n, left := r.d.deliverTenant(ctx, evs)
		r.done <- sent{tenant: tenant, url: url, attempts: n, unsent: left}
	}()
	return true
}

// byTenant groups claimed events by tenant, in the order of each tenant's
// first event, each group in seq order.
func byTenant(events []vault.ClaimedEvent) [][]vault.ClaimedEvent {
	var out [][]vault.ClaimedEvent
	at := map[uuid.UUID]int{}
	for _, ev := range events {
		i, ok := at[ev.TenantID]
		if !ok {
			i = len(out)
			at[ev.TenantID] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], ev)
	}
	return out
}

// ids returns the events' ids.
func ids(evs []vault.ClaimedEvent) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// deliverTenant attempts one tenant's events in order until ctx ends or
// the endpoint's circuit opens, and returns how many it attempted and the
// ids of those it did not.
func (d *Deliverer) deliverTenant(ctx context.Context, events []vault.ClaimedEvent) (int, []string) {
	for i, ev := range events {
		if ctx.Err() != nil || !d.attempt(ctx, ev) {
			return i, ids(events[i:])
		}
	}
	return len(events), nil
}

// attempt sends ev once and records how it went. It reports false when it
// did not attempt (ctx ended before an answer, or the endpoint's circuit is
// open), leaving ev to be released.
func (d *Deliverer) attempt(ctx context.Context, ev vault.ClaimedEvent) bool {
	at := d.svc.Now()
	if d.breaker.isOpen(ev.URL, at) {
		return false
	}
	res := vault.AttemptResult{At: at}
	if ev.Err != nil {
		d.log.Error("webhook event cannot be opened", "event_id", ev.ID, "tenant_id", ev.TenantID, "error", ev.Err)
		res.Error = "the vault could not prepare this event; it will be retried"
	} else {
		var timedOut bool
		res, timedOut = d.send(ctx, ev, at)
		if ctx.Err() != nil && !res.Delivered {
			return false
		}
		if d.breaker.record(ev.URL, timedOut, res.Status != 0, d.svc.Now()) {
			d.log.Warn("webhook endpoint keeps timing out: its events wait", "tenant_id", ev.TenantID)
		}
	}
	if !res.Delivered {
		res.RetryAt = d.retry.Next(ev.Attempt, ev.FirstAttemptAt, at, d.jitter())
	}
	// The attempt was made: while the database fails over, keep trying to
	// write it down, or the event would go out again once the lease runs out.
	err := loop.Retry(ctx, func(err error) bool { return vault.ErrorKind(err) == vault.KindUnavailable },
		func(ctx context.Context) error {
			recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return d.svc.RecordWebhookAttempt(recordCtx, d.owner, ev, res)
		})
	if err != nil {
		d.log.Error("recording a webhook attempt", "event_id", ev.ID, "error", err)
	}
	if res.RetryAt.IsZero() && !res.Delivered {
		d.log.Warn("webhook event given up", "event_id", ev.ID, "tenant_id", ev.TenantID, "attempts", ev.Attempt)
	}
	d.metrics.Attempted(deliveryOutcome(res), ev.Err == nil, res.Duration)
	return true
}

// deliveryOutcome is the metrics outcome of an attempt's result.
func deliveryOutcome(res vault.AttemptResult) metrics.DeliveryOutcome {
	switch {
	case res.Delivered:
		return metrics.Delivered
	case res.RetryAt.IsZero():
		return metrics.GaveUp
	}
	return metrics.Retrying
}

// send POSTs ev's envelope, signed at at, and reads the answer; it also
// reports whether the attempt timed out. A failure without an answer is
// recorded as one plain sentence whatever its cause (refused, reset,
// timeout, name or certificate): the tenant reads the record, and what the
// network said about an address is no business of an API client. The cause
// goes to the log.
func (d *Deliverer) send(ctx context.Context, ev vault.ClaimedEvent, at time.Time) (vault.AttemptResult, bool) {
	res := vault.AttemptResult{At: at}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.URL, bytes.NewReader(ev.Body))
	if err != nil {
		res.Error = errNoAnswer
		return res, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cardvault-webhooks")
	secrets := []string{ev.Secret.Reveal()}
	if !ev.PreviousSecret.IsZero() {
		secrets = append(secrets, ev.PreviousSecret.Reveal())
	}
	req.Header.Set(SignatureHeader, SignAll(at, ev.Body, secrets...))
	start := time.Now()
	resp, err := d.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		resp.Body.Close()
		res.Status = resp.StatusCode
	}
	res.Duration = time.Since(start)
	switch {
	case res.Status >= 200 && res.Status < 300:
		res.Delivered = true // the answer's status counts even if its body broke off
	case res.Status >= 300 && res.Status < 400:
		res.Error = "redirects are not followed"
	case err != nil && res.Status == 0:
		res.Error = errNoAnswer
		d.log.Info("webhook attempt got no answer", "event_id", ev.ID, "tenant_id", ev.TenantID, "cause", describe(err))
	}
	return res, res.Status == 0 && isTimeout(err)
}

// release hands events this deliverer claimed but did not attempt back to
// the outbox.
func (d *Deliverer) release(ids []string) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.svc.ReleaseWebhookEvents(ctx, d.owner, ids); err != nil {
		d.log.Error("releasing webhook events", "error", err)
	}
}
