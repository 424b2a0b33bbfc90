package webhook

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
)

// The deliverer's defaults.
const (
	DefaultPoll        = time.Second     // how often to look for due events without a wake-up
	DefaultBatch       = 20              // events claimed at a time
	DefaultConcurrency = 8               // tenants sent to at once
	DefaultLease       = 5 * time.Minute // covers a batch of one tenant's events all timing out
)

// maxAnswer is how much of a receiver's answer is read (and discarded).
const maxAnswer = 64 << 10

// Deliverer sends the vault's webhook events. Several may run at once, in
// one process or in several replicas: each attempt is claimed under a lease
// first, so no attempt is sent twice. Delivery is at least once: a receiver
// that answers too late, or a deliverer that dies after sending, makes the
// event go out again, so receivers de-duplicate by event id.
type Deliverer struct {
	svc         vault.WebhookOutbox
	client      *http.Client
	log         *slog.Logger
	owner       string
	timeout     time.Duration
	poll        time.Duration
	batch       int
	concurrency int
	lease       time.Duration
	retry       RetryPolicy
	jitter      func() float64
}

// Option tunes a Deliverer.
type Option func(*Deliverer)

// WithPoll sets how often the deliverer looks for due events when nothing
// wakes it (DefaultPoll).
func WithPoll(d time.Duration) Option { return func(x *Deliverer) { x.poll = d } }

// WithRetry sets the retry policy (DefaultRetry).
func WithRetry(p RetryPolicy) Option { return func(x *Deliverer) { x.retry = p } }

// WithTimeout names the client's per-attempt timeout for the text recorded
// with timed-out attempts (DefaultTimeout); it does not change the client.
func WithTimeout(d time.Duration) Option { return func(x *Deliverer) { x.timeout = d } }

// NewDeliverer returns a deliverer of svc's outbox that sends with client
// (NewHTTPClient makes a suitable one), logs to log and names itself owner
// in its leases (a process name such as host/pid; a random suffix keeps two
// deliverers of one process apart).
func NewDeliverer(svc vault.WebhookOutbox, client *http.Client, log *slog.Logger, owner string, opts ...Option) *Deliverer {
	d := &Deliverer{svc: svc, client: client, log: log, owner: owner + "/" + uuid.NewString()[:8],
		timeout: DefaultTimeout, poll: DefaultPoll, batch: DefaultBatch, concurrency: DefaultConcurrency,
		lease: DefaultLease, retry: DefaultRetry, jitter: randFloat}
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

// DeliverDue makes one attempt at every event due now, batch after batch,
// and returns how many attempts it made. It returns a domain error when
// the database fails.
func (d *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	total := 0
	for ctx.Err() == nil {
		events, err := d.svc.ClaimWebhookEvents(ctx, d.owner, d.batch, d.lease)
		if err != nil {
			return total, err
		}
		total += d.deliverBatch(ctx, events)
		if len(events) < d.batch {
			break
		}
	}
	return total, nil
}

// deliverBatch sends each tenant's events in created order, tenants
// concurrently, and returns how many attempts it made. Events left unsent
// because ctx ended are released for another deliverer.
func (d *Deliverer) deliverBatch(ctx context.Context, events []vault.ClaimedEvent) int {
	var order []uuid.UUID
	byTenant := map[uuid.UUID][]vault.ClaimedEvent{}
	for _, ev := range events {
		if _, ok := byTenant[ev.TenantID]; !ok {
			order = append(order, ev.TenantID)
		}
		byTenant[ev.TenantID] = append(byTenant[ev.TenantID], ev)
	}
	var mu sync.Mutex
	attempts := 0
	var unsent []string
	sem := make(chan struct{}, d.concurrency)
	var wg sync.WaitGroup
	for _, tenant := range order {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			n, left := d.deliverTenant(ctx, byTenant[tenant])
			mu.Lock()
			attempts, unsent = attempts+n, append(unsent, left...)
			mu.Unlock()
		})
	}
	wg.Wait()
	d.release(unsent)
	return attempts
}

// deliverTenant attempts one tenant's events in order until ctx ends, and
// returns how many it attempted and the ids of those it did not.
func (d *Deliverer) deliverTenant(ctx context.Context, events []vault.ClaimedEvent) (int, []string) {
	for i, ev := range events {
		if ctx.Err() != nil || !d.attempt(ctx, ev) {
			ids := make([]string, 0, len(events)-i)
			for _, left := range events[i:] {
				ids = append(ids, left.ID)
			}
			return i, ids
		}
	}
	return len(events), nil
}

// attempt sends ev once and records how it went. It reports false when it
// did not attempt (ctx ended before an answer), leaving ev to be released.
func (d *Deliverer) attempt(ctx context.Context, ev vault.ClaimedEvent) bool {
	at := d.svc.Now()
	res := vault.AttemptResult{At: at}
	if ev.Err != nil {
		d.log.Error("webhook event cannot be opened", "event_id", ev.ID, "tenant_id", ev.TenantID, "error", ev.Err)
		res.Error = "the vault could not prepare this event; it will be retried"
	} else {
		res = d.send(ctx, ev, at)
		if ctx.Err() != nil && !res.Delivered {
			return false
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
	return true
}

// send POSTs ev's envelope, signed at at, and reads the answer.
func (d *Deliverer) send(ctx context.Context, ev vault.ClaimedEvent, at time.Time) vault.AttemptResult {
	res := vault.AttemptResult{At: at}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.URL, bytes.NewReader(ev.Body))
	if err != nil {
		res.Error = "the webhook URL cannot be requested"
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cardvault-webhooks")
	req.Header.Set(SignatureHeader, Sign(ev.Secret.Reveal(), at, ev.Body))
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
	case err != nil:
		res.Error = describe(err, d.timeout)
	}
	return res
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
