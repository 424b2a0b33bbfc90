package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
)

// sendOne sends the next due item; it reports whether there was one.
func (r *Runner) sendOne(ctx context.Context) bool {
	w, ok, err := r.next(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("claiming export items", "error", err)
		}
		return false
	}
	if !ok {
		return false
	}
	r.send(ctx, w)
	return true
}

// send sends w through the forward path: its job's rate limit, the
// token.export audit row committed, the forward, then its outcome written.
func (r *Runner) send(ctx context.Context, w vault.ExportWork) {
	j, err := r.job(ctx, w.JobID)
	if err != nil {
		r.jobUnusable(ctx, w, err)
		return
	}
	if err := j.pace.Wait(ctx); err != nil {
		if vault.IsExportEnded(err) {
			r.drop(w)
			return
		}
		r.giveBack(ctx, w)
		return
	}
	if err := r.svc.AuditExportItem(ctx, r.cfg.Owner, w); err != nil {
		if !vault.IsExportEnded(err) && ctx.Err() == nil {
			r.itemLog(w).Error("auditing an export item", "error", err)
		}
		if vault.IsExportEnded(err) {
			r.drop(w)
			return
		}
		r.giveBack(ctx, w)
		return
	}
	body, err := j.plan.body(w.BusinessKey)
	if err != nil {
		r.record(ctx, w, vault.ExportAttempt{Status: vault.ItemFailed, Error: "the body does not encode"})
		return
	}
	// The send goes on when ctx ends meanwhile: its outcome must be known to be recorded.
	rec, err := r.svc.Forward(context.WithoutCancel(ctx), vault.Actor{TenantID: w.TenantID, ClientAddr: "exporter",
		RequestID: "export_" + w.JobID.String()}, vault.ForwardInput{
		PaymentMethod: w.TokenID.String(), URL: j.setup.URL, Replacements: j.plan.replacements, Body: string(body),
		// No metadata: the record names the job by its request id, and a
		// UUID in metadata may read as a card number to its check.
		Headers: append(slices.Clone(j.setup.Headers), vault.ForwardHeader{Name: "Idempotency-Key", Value: idempotencyKey(w)})})
	if isURLRefused(err) {
		r.fail(ctx, w, "the destination no longer allows the export's url")
		return
	}
	r.record(ctx, w, r.outcome(j, rec, err, w.Attempts+1))
}

// idempotencyKey is the Idempotency-Key sent with every attempt of w: a
// vault that honours it (cardvault does) answers a repeated send, such as
// one resumed after a crash, with the token it already made.
func idempotencyKey(w vault.ExportWork) string {
	return "export-" + w.JobID.String() + "-" + w.TokenID.String()
}

// jobUnusable handles an item whose job cannot be loaded: ended (the item
// is dropped), its destination removed (the job fails), or a passing
// failure (the item is given back).
func (r *Runner) jobUnusable(ctx context.Context, w vault.ExportWork, err error) {
	switch {
	case vault.IsExportEnded(err):
		r.drop(w)
	case vault.ErrorKind(err) == vault.KindNotFound:
		r.fail(ctx, w, "the forwarding destination was removed")
	case errors.Is(err, errUnsupportedDestination):
		r.fail(ctx, w, err.Error())
	default:
		if ctx.Err() == nil {
			r.itemLog(w).Error("loading an export job", "error", err)
		}
		r.giveBack(ctx, w)
	}
}

// fail ends w's job as failed with reason and gives w back.
func (r *Runner) fail(ctx context.Context, w vault.ExportWork, reason string) {
	if err := r.svc.FailExport(context.WithoutCancel(ctx), w.JobID, reason); err != nil && !vault.IsExportEnded(err) {
		r.itemLog(w).Error("failing an export job", "error", err)
	}
	r.forget(w.JobID)
	r.giveBack(ctx, w)
}

// isURLRefused reports the forward refusal of a url no destination allows.
func isURLRefused(err error) bool {
	e := vault.AsError(err)
	return err != nil && e.Kind == vault.KindBadRequest && e.Param == "url"
}

// outcome turns a forward's record or error into the item's attempt.
func (r *Runner) outcome(j *job, rec vault.ForwardingRequest, err error, attempt int) vault.ExportAttempt {
	if err != nil {
		e := vault.AsError(err)
		switch e.Kind {
		case vault.KindUpstream, vault.KindUpstreamTimeout, vault.KindUnavailable:
			return r.retryOrFail(e.Code, true, attempt)
		case vault.KindNotFound:
			return vault.ExportAttempt{Status: vault.ItemFailed, Error: "the token no longer exists"}
		}
		return vault.ExportAttempt{Status: vault.ItemFailed, Error: e.Code}
	}
	if rec.Response == nil {
		return r.retryOrFail("no answer from the destination", true, attempt)
	}
	status := rec.Response.Status
	if status >= 200 && status < 300 {
		return j.plan.remoteID(rec)
	}
	reason := fmt.Sprintf("destination answered HTTP %d", status)
	code := errorCode(rec.Response.Body)
	if code != "" {
		reason += " (" + code + ")"
	}
	return r.retryOrFail(reason, retryableStatus(status, code), attempt)
}

// retryableStatus reports whether an error answer may succeed when sent
// again: a timeout, a 429, a 5xx, or a 409 idempotency_key_in_use (the
// destination still runs an earlier send of the same key, such as one a
// crashed process made; Stripe's and cardvault's retry guidance).
func retryableStatus(status int, code string) bool {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return true
	case status == http.StatusConflict:
		return code == vault.CodeIdempotencyKeyInUse
	}
	return false
}

// retryOrFail schedules another attempt with jittered exponential backoff,
// or gives the item up when the failure is permanent or attempts ran out.
func (r *Runner) retryOrFail(reason string, retryable bool, attempt int) vault.ExportAttempt {
	if !retryable {
		return vault.ExportAttempt{Status: vault.ItemFailed, Error: reason}
	}
	if attempt >= r.cfg.MaxAttempts {
		return vault.ExportAttempt{Status: vault.ItemFailed, Error: fmt.Sprintf("gave up after %d attempts: %s", attempt, reason)}
	}
	return vault.ExportAttempt{Status: vault.ItemPending, Error: reason, RetryAfter: r.backoff(attempt)}
}

// backoff returns the wait before attempt+1: the base doubled per attempt,
// capped, with jitter in its upper half so replicas do not retry in step.
// It is computed from the durable attempt count (as the import worker's
// is), so the schedule survives restarts, which a retry library's
// in-memory state would not.
func (r *Runner) backoff(attempt int) time.Duration {
	d := r.cfg.RetryBase << min(attempt-1, 20)
	if d <= 0 || d > r.cfg.RetryCap {
		d = r.cfg.RetryCap
	}
	return d/2 + rand.N(d/2+1)
}

// errorCodePattern is what an error code quoted in a reason may look like:
// never free text that could hold card data.
var errorCodePattern = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// errorCode reads the error code out of an error answer in cardvault's
// (and Stripe's) {"error":{"code":…}} shape, never its message; "" when
// there is none.
func errorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || !errorCodePattern.MatchString(e.Error.Code) {
		return ""
	}
	return e.Error.Code
}

// errUnsupportedDestination is a destination an export cannot build a body for.
var errUnsupportedDestination = errors.New("the destination's fields are not plain JSON object paths")

// plan is how one job's cards are sent: the replacements asked for, the
// body with its card fields blank, and where the answer holds the other
// vault's token id.
type plan struct {
	replacements []string
	blank        map[string]any
	dest         forwarding.Destination
}

// planFor returns the plan of a destination in the own-vault shape (any
// JSON destination whose fields are object paths). It returns
// errUnsupportedDestination for paths with array indices or wildcards.
func planFor(d vault.ForwardDestination) (plan, error) {
	var dest forwarding.Destination
	if err := json.Unmarshal(d.Config, &dest); err != nil {
		return plan{}, errUnsupportedDestination
	}
	p := plan{blank: map[string]any{}, dest: dest}
	for _, rep := range vault.ExportReplacements {
		fields := dest.Fields[forwarding.Replacement(rep)]
		if len(fields) == 0 {
			continue
		}
		p.replacements = append(p.replacements, rep)
		for _, f := range fields {
			if err := setBlank(p.blank, strings.Split(f.Path, ".")); err != nil {
				return plan{}, err
			}
		}
	}
	if !slices.Contains(p.replacements, "card_number") {
		return plan{}, errUnsupportedDestination
	}
	return p, nil
}

// setBlank puts "" at path in m, making the objects on the way.
func setBlank(m map[string]any, path []string) error {
	for i, seg := range path {
		if seg == "" || seg == "*" || strings.Trim(seg, "0123456789") == "" {
			return errUnsupportedDestination
		}
		if i == len(path)-1 {
			m[seg] = ""
			return nil
		}
		next, ok := m[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[seg] = next
		}
		m = next
	}
	return nil
}

// body is the job's blank body with the business key in its metadata.
// encoding/json writes map keys sorted, so every attempt of a token sends
// the same body (which a receiver's idempotency check compares).
func (p plan) body(businessKey string) ([]byte, error) {
	b := make(map[string]any, len(p.blank)+1)
	for k, v := range p.blank {
		b[k] = v
	}
	if businessKey != "" {
		b["metadata"] = map[string]string{"business_key": businessKey}
	}
	return json.Marshal(b)
}

// remoteID is the attempt of a 2xx answer: succeeded with the token id the
// forward read at the destination's remote_token_path, or failed when that
// path is set and the answer has no usable id there.
func (p plan) remoteID(rec vault.ForwardingRequest) vault.ExportAttempt {
	if p.dest.RemoteTokenPath == "" {
		return vault.ExportAttempt{Status: vault.ItemSucceeded}
	}
	if rec.RemoteTokenID == "" {
		return vault.ExportAttempt{Status: vault.ItemFailed, Error: "the answer has no usable token id at " + p.dest.RemoteTokenPath}
	}
	return vault.ExportAttempt{Status: vault.ItemSucceeded, RemoteID: rec.RemoteTokenID}
}
