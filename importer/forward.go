package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// replacements are the card fields Stripe fills into the forwarded body.
var replacements = []string{"card_number", "card_expiry", "card_cvc", "cardholder_name"}

// forwardBody is the body of the reference guide ("Stripe forward backup to
// vault"), its card fields left blank for Stripe to fill in.
type forwardBody struct {
	Metadata struct {
		BusinessKey string `json:"business_key"`
	} `json:"metadata"`
	Card struct {
		Number   string `json:"number"`
		ExpMonth string `json:"exp_month"`
		ExpYear  string `json:"exp_year"`
		CVC      string `json:"cvc"`
		Name     string `json:"name"`
	} `json:"card"`
}

// ForwardBody returns the request body Stripe forwards for payment method
// pm: metadata.business_key is pm, so each token traces back to it.
func ForwardBody(pm string) string {
	var b forwardBody
	b.Metadata.BusinessKey = pm
	out, _ := json.Marshal(b) // cannot fail: strings only
	return string(out)
}

// ForwardParams returns the forwarding request for one attempt at pm:
// destination url, the guide's body, the four replacements, the job's own
// vault API key as X-API-Key, and an idempotency key fresh for each attempt
// (Stripe replays an old key's answer, errors included).
func ForwardParams(jobID uuid.UUID, pm, url string, vaultKey card.Secret, attempt int) *stripe.ForwardingRequestCreateParams {
	p := &stripe.ForwardingRequestCreateParams{
		PaymentMethod: stripe.String(pm),
		URL:           stripe.String(url),
		Replacements:  stripe.StringSlice(replacements),
		Request: &stripe.ForwardingRequestCreateRequestParams{
			Body: stripe.String(ForwardBody(pm)),
			Headers: []*stripe.ForwardingRequestCreateRequestHeaderParams{
				{Name: stripe.String("X-API-Key"), Value: stripe.String(vaultKey.Reveal())},
			},
		},
	}
	p.SetIdempotencyKey(fmt.Sprintf("cardvault-import-%s-%s-%d", jobID, pm, attempt))
	return p
}

// forwardOne takes one leased due item (see next) and forwards it; it
// reports whether it found one.
func (r *Runner) forwardOne(ctx context.Context) bool {
	w, ok, err := r.next(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("claiming import items", "error", err)
		}
		return false
	}

	r.drained.Store(!ok)
	if !ok {
		return false
	}
	r.forward(ctx, w)
	return true
}

// forward makes one attempt at an item and has it recorded (record). A fatal Stripe
// error fails the whole job; a stop in the middle gives the item back
// unrecorded.
func (r *Runner) forward(ctx context.Context, w vault.ItemWork) {
	if err := r.stillActive(ctx, w.JobID); err != nil {
		r.giveBack(ctx, w, err) // aborted (or ended) since the item was claimed: its key is revoked
		return
	}
	jc, err := r.client(ctx, w.JobID)
	if err == nil {
		err = jc.pace.Wait(ctx) // the job's next request slot, before the item's attempt is under way
	}
	if err != nil {
		r.giveBack(ctx, w, err)
		return
	}
	params := ForwardParams(w.JobID, w.PaymentMethod, r.cfg.PublicURL+"/cde-import", jc.creds.ForwardKey, w.Attempts+1)
	fr, err := jc.stripe.V1ForwardingRequests.Create(ctx, params)
	if ctx.Err() != nil {
		r.giveBack(ctx, w, ctx.Err())
		return
	}
	if refusedKey(fr) {
		if err := r.stillActive(ctx, w.JobID); err != nil {
			r.giveBack(ctx, w, err) // aborted while the forward was under way: not the card's failure
			return
		}
	}
	at, fatal := r.outcome(fr, err, w)
	if fatal != "" {
		r.giveBack(ctx, w, nil)
		r.fail(w.JobID, fatal)
		return
	}
	r.record(ctx, w, at)
	if at.Status == vault.ItemFailed {
		r.itemLog(w).Warn("import item given up", "attempts", w.Attempts+1, "last_error", at.Error)
	}
}

// stillActive returns vault.ErrImportEnded when job jobID is no longer
// preparing or running, another error when that cannot be read, else nil.
func (r *Runner) stillActive(ctx context.Context, jobID uuid.UUID) error {
	active, err := r.svc.ActiveImports(ctx, []uuid.UUID{jobID})
	if err != nil {
		return err
	}
	if !active[jobID] {
		return vault.ErrImportEnded
	}
	return nil
}

// refusedKey reports whether the destination refused the job's API key
// (401): the job may have been aborted meanwhile, which revokes it.
func refusedKey(fr *stripe.ForwardingRequest) bool {
	return fr != nil && fr.ResponseDetails != nil && fr.ResponseDetails.Status == http.StatusUnauthorized
}

// itemLog returns the logger for messages about item w. It is made only
// when there is something to log: With renders its attributes at once.
func (r *Runner) itemLog(w vault.ItemWork) *slog.Logger {
	return r.log.With("import_id", w.JobID, "payment_method", w.PaymentMethod)
}

// giveBack releases an item without counting an attempt. While the
// database fails over the release is retried (until ctx ends): an item left
// leased to this worker would be renewed by its heartbeat and never be
// forwarded.
func (r *Runner) giveBack(ctx context.Context, w vault.ItemWork, cause error) {
	if vault.IsImportEnded(cause) {
		r.forget(w.JobID)
	} else if cause != nil && cause != context.Canceled {
		r.log.Error("import item not attempted", "import_id", w.JobID, "error", cause)
	}
	err := loop.Retry(ctx, isUnavailable, func(ctx context.Context) error {
		relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return r.svc.ReleaseItem(relCtx, r.cfg.Owner, w)
	})
	if err != nil {
		r.log.Error("releasing an import item", "import_id", w.JobID, "error", err)
	}
	r.held.drop(w)
}

// outcome turns a forwarding answer into the item's next state, or a
// reason to fail the whole job. Stripe answers 200 even when the vault
// refused the card: success is the destination's status and body.
func (r *Runner) outcome(fr *stripe.ForwardingRequest, err error, w vault.ItemWork) (vault.Attempt, string) {
	if isRateLimit(err) {
		// Stripe asks us to slow down: retry later, without using up the
		// item's attempts (Stripe's rate limits are transient).
		return vault.Attempt{Status: vault.ItemPending, Error: "stripe 429 rate_limit", Throttled: true,
			RetryAfter: r.backoff(w.Throttled + 1)}, ""
	}
	attempt := w.Attempts - w.Throttled + 1
	if err != nil {
		reason, fatal, retryable := stripeFailure(err)
		if fatal {
			return vault.Attempt{}, reason
		}
		return r.retryOrFail(reason, retryable, attempt), ""
	}
	if fr.ResponseDetails == nil {
		return r.retryOrFail("stripe answered without the destination's response", true, attempt), ""
	}
	status := int(fr.ResponseDetails.Status)
	if status == http.StatusOK || status == http.StatusCreated {
		id, ok := tokenID(fr.ResponseDetails.Body)
		if !ok {
			return vault.Attempt{Status: vault.ItemFailed, Error: fmt.Sprintf("destination %d without a token id", status)}, ""
		}
		return vault.Attempt{Status: vault.ItemSucceeded, TokenID: id}, ""
	}
	reason := fmt.Sprintf("destination %d %s", status, errorCode(fr.ResponseDetails.Body))
	return r.retryOrFail(reason, retryableStatus(status), attempt), ""
}

// isRateLimit reports a 429 answer from Stripe itself.
func isRateLimit(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.HTTPStatusCode == http.StatusTooManyRequests
}

// retryOrFail schedules another attempt with jittered exponential backoff,
// or gives the item up when the failure is permanent or attempts ran out.
func (r *Runner) retryOrFail(reason string, retryable bool, attempt int) vault.Attempt {
	if !retryable {
		return vault.Attempt{Status: vault.ItemFailed, Error: reason}
	}
	if attempt >= r.cfg.MaxAttempts {
		return vault.Attempt{Status: vault.ItemFailed, Error: fmt.Sprintf("gave up after %d attempts: %s", attempt, reason)}
	}
	return vault.Attempt{Status: vault.ItemPending, Error: reason, RetryAfter: r.backoff(attempt)}
}

// backoff returns the wait before attempt+1: the base doubled per attempt,
// capped, with full jitter in its upper half so replicas do not retry in
// step. The schedule is computed from the durable attempt count rather than
// kept in a retry library's memory, so it survives restarts.
func (r *Runner) backoff(attempt int) time.Duration {
	d := r.cfg.RetryBase << min(attempt-1, 20)
	if d <= 0 || d > r.cfg.RetryCap {
		d = r.cfg.RetryCap
	}
	return d/2 + rand.N(d/2+1)
}

// tokenID reads the token id out of the vault's /cde-import answer.
func tokenID(body string) (uuid.UUID, bool) {
	var rec struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &rec); err != nil || rec.ID == uuid.Nil {
		return uuid.Nil, false
	}
	return rec.ID, true
}

// errorCode reads the error code out of a destination's error answer: the
// vault's {"error":{"code":…}} shape, never its message.
func errorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || e.Error.Code == "" {
		return "(no error code)"
	}
	return card.MaskPANs(e.Error.Code)
}
