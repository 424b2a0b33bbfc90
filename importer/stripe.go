package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/internal/pace"
	"github.com/cardvault/cardvault/vault"
)

// jobClient is a job's Stripe client with its credentials, throttled to the
// job's request rate; backend is the client's API backend, for the lists
// the importer decodes itself (customerItems).
type jobClient struct {
	creds   vault.ImportCredentials
	stripe  *stripe.Client
	backend stripe.Backend
	// pace spaces the job's requests across every process working on it;
	// nil when the rate is off. List calls take their slots in the
	// client's transport (throttle), a forward before it is sent.
	pace *pace.Pacer
}

// client returns the job's Stripe client, opening its credentials on first
// use. It returns an error for which vault.IsImportEnded is true once the job
// has ended.
func (r *Runner) client(ctx context.Context, jobID uuid.UUID) (*jobClient, error) {
	r.mu.Lock()
	jc, ok := r.clients[jobID]
	r.mu.Unlock()
	if ok {
		return jc, nil
	}
	creds, err := r.svc.Credentials(ctx, jobID)
	if err != nil {
		return nil, err
	}
	return r.remember(creds), nil
}

// remember caches a client for the job of creds and returns it.
func (r *Runner) remember(creds vault.ImportCredentials) *jobClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	if jc, ok := r.clients[creds.JobID]; ok {
		return jc
	}
	p := r.pacer(creds.JobID)
	backends := r.stripeBackends(p)
	jc := &jobClient{creds: creds, backend: backends.API, pace: p,
		stripe: stripe.NewClient(creds.ProviderKey.Reveal(), stripe.WithBackends(backends))}
	r.clients[creds.JobID] = jc
	return jc
}

// cachedJobs returns the jobs whose client (and credentials) are cached.
func (r *Runner) cachedJobs() []uuid.UUID {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]uuid.UUID, 0, len(r.clients))
	for id := range r.clients {
		ids = append(ids, id)
	}
	return ids
}

// forget drops a job's cached client and credentials.
func (r *Runner) forget(jobID uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.clients, jobID)
}

// stripeBackends returns stripe-go's backends on the configured API base,
// without client telemetry, their list calls spaced by p (nil: not
// spaced). stripe-go's own retries are off: GETs are retried by
// retryGets, forwards by the item's durable attempts, each with a fresh
// idempotency key.
func (r *Runner) stripeBackends(p *pace.Pacer) *stripe.Backends {
	hc := *r.cfg.HTTPClient
	hc.Transport = &retryGets{
		next:  &throttle{next: r.cfg.HTTPClient.Transport, pace: p},
		tries: r.cfg.MaxAttempts, base: r.cfg.RetryBase, cap: r.cfg.RetryCap,
	}
	return stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(r.cfg.StripeAPIBase),
		HTTPClient:        &hc,
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		// No request metrics for Stripe in a header of the next request:
		// they tell Stripe nothing it needs and cost a JSON encoding per
		// forward.
		EnableTelemetry: stripe.Bool(false),
	})
}

// pacer returns job's pacer at the configured rate, on request slots
// reserved in the job's row so that the rate holds across every process
// working on the job, or nil when the rate is off (negative).
func (r *Runner) pacer(job uuid.UUID) *pace.Pacer {
	if r.cfg.Rate < 0 {
		return nil
	}
	rate := r.cfg.Rate
	return pace.New(func(ctx context.Context, n int) (time.Duration, error) {
		return r.svc.ReserveImportRequests(ctx, job, n, rate)
	}, rate)
}

// throttle spaces a job's list calls to Stripe (GETs) at the job's rate;
// a forward takes its slot before it is sent (jobClient.wait).
type throttle struct {
	next http.RoundTripper
	pace *pace.Pacer
}

// RoundTrip waits for the job's next request slot when req is a GET, then
// sends req. It returns vault.ErrImportEnded once the job has ended.
func (t *throttle) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet {
		if err := t.pace.Wait(req.Context()); err != nil {
			return nil, err
		}
	}
	return t.next.RoundTrip(req)
}

// retryGets retries GET requests (Stripe list calls, which are safe to
// repeat) on 429, 5xx and network errors with jittered exponential backoff,
// which stripe-go does not do for rate limits. Other methods pass through.
type retryGets struct {
	next      http.RoundTripper
	tries     int
	base, cap time.Duration
}

// RoundTrip sends req, retrying a GET that may succeed later.
func (t *retryGets) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return t.next.RoundTrip(req)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = t.base, t.cap, 0
	var resp *http.Response
	op := func() error {
		drain(resp) // an earlier answer we are retrying past
		var err error
		resp, err = t.next.RoundTrip(req)
		if err != nil {
			if req.Context().Err() != nil || vault.IsImportEnded(err) {
				return backoff.Permanent(err)
			}
			return err
		}
		if !retryableStatus(resp.StatusCode) {
			return nil
		}
		return errRetryableStatus
	}
	err := backoff.Retry(op, backoff.WithContext(backoff.WithMaxRetries(b, uint64(t.tries-1)), req.Context()))
	if errors.Is(err, errRetryableStatus) {
		return resp, nil // the last answer, for stripe-go to turn into its error
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

var errRetryableStatus = errors.New("retryable status")

// retryableStatus reports the HTTP statuses worth retrying later.
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500 || code == 0
}

// drain discards and closes a body so its connection can be reused.
func drain(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

// stripeFailure classifies an error from a Stripe call: fatal when no retry
// can succeed for the whole job (the key was rejected or lacks permission),
// retryable when a later attempt may succeed (rate limit, Stripe 5xx,
// network, timeout). reason describes it without any secret.
func stripeFailure(err error) (reason string, fatal, retryable bool) {
	var se *stripe.Error
	if errors.As(err, &se) {
		reason = fmt.Sprintf("stripe %d %s", se.HTTPStatusCode, firstNonEmpty(string(se.Code), string(se.Type)))
		switch {
		case se.HTTPStatusCode == http.StatusUnauthorized:
			return "Stripe rejected the API key (" + reason + ")", true, false
		case se.HTTPStatusCode == http.StatusForbidden:
			return "the Stripe API key lacks a permission the import needs (" + reason + ")", true, false
		}
		return reason, false, retryableStatus(se.HTTPStatusCode)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "stripe unreachable: network error or timeout", false, true
	}
	return "stripe call failed", false, true
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
