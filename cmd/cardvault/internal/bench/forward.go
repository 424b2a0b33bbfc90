package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// The forward phase: POST /v1/forwarding/requests of random tokens from
// tokenize to an instant loopback HTTPS destination (e2e.Destination),
// allow-listed with the stripe_own_vault preset, the card filled into
// Stripe's own-vault body. Besides the load figures it reports the vault's
// own overhead per forward: the latency the bench saw minus the
// destination_duration the vault measured around its exchange with the
// destination (whole milliseconds, so the overhead is rounded up by less
// than 1 ms).

// forwardPath is Stripe's forwarding API path, which the vault serves.
const forwardPath = "/v1/forwarding/requests"

// forwardState is the forward phase's: the endpoint forwarded to, when
// its measured requests start, and each worker's overheads.
type forwardState struct {
	url       string
	from      time.Time         // requests started before are the warm-up's
	overheads [][]time.Duration // per worker, the measured requests'
}

// forwardBodyFormat is the JSON forward of a token (%q) to a URL (%q): the
// four card replacements into Stripe's own-vault body with its fields
// blank, and the destination's key as a header (redacted in the record).
const forwardBodyFormat = `{"payment_method":%q,"url":%q,` +
	`"replacements":["card_number","card_expiry","card_cvc","cardholder_name"],` +
	`"request":{"body":"{\"metadata\":{},\"card\":{\"number\":\"\",\"exp_month\":\"\",\"exp_year\":\"\",\"cvc\":\"\",\"name\":\"\"}}",` +
	`"headers":[{"name":"X-API-Key","value":"bench_destination_key"}]}}`

// addDestination allow-lists the environment's destination for the
// tenant and prepares the forward phase. It returns an error when the
// vault refuses the destination.
func (b *benchRun) addDestination(ctx context.Context) error {
	endpoint := b.env.dest.URL() + "/cde-import"
	body := fmt.Appendf(nil, `{"url":%q,"preset":"stripe_own_vault"}`, endpoint)
	if _, err := b.client.Call(ctx, http.MethodPost, "/forwarding/destinations", body, http.StatusCreated); err != nil {
		return fmt.Errorf("allow-listing the bench's destination: %w", err)
	}
	b.fwd = forwardState{url: endpoint, overheads: make([][]time.Duration, b.o.Concurrency)}
	return nil
}

// timedForward runs the forward phase, its measured requests those that
// start after the warm-up.
func (b *benchRun) timedForward(ctx context.Context) e2e.Result {
	b.fwd.from = time.Now().Add(b.o.Warmup)
	return b.timed(ctx, PhaseForward, b.o.Progress, b.forward)
}

// forward forwards a random token's card to the destination and records
// the vault's overhead. The destination must have answered 200.
func (b *benchRun) forward(ctx context.Context, w, _ int) error {
	id, err := b.randomToken()
	if err != nil {
		return err
	}
	t0 := time.Now()
	out, err := b.cl(w).Call(ctx, http.MethodPost, forwardPath, fmt.Appendf(nil, forwardBodyFormat, id, b.fwd.url), http.StatusOK)
	elapsed := time.Since(t0)
	if err != nil {
		return err
	}
	dd, err := destinationDuration(out)
	if err != nil {
		return err
	}
	if !t0.Before(b.fwd.from) {
		b.fwd.overheads[w] = append(b.fwd.overheads[w], max(0, elapsed-dd))
	}
	return nil
}

// forwardAnswer is the part of a forwarding.request the bench reads.
type forwardAnswer struct {
	Status         string `json:"status"`
	RequestContext *struct {
		DestinationDuration int64 `json:"destination_duration"`
	} `json:"request_context"`
	ResponseDetails *struct {
		Status int `json:"status"`
	} `json:"response_details"`
}

// destinationDuration returns the destination_duration of a forward's
// answer, or an error unless the destination answered 200.
func destinationDuration(body []byte) (time.Duration, error) {
	var a forwardAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return 0, fmt.Errorf("POST %s: the answer is not a forwarding.request: %w", forwardPath, err)
	}
	switch {
	case a.Status != "succeeded" || a.RequestContext == nil || a.ResponseDetails == nil:
		return 0, fmt.Errorf("POST %s: the forward is %q, not succeeded", forwardPath, a.Status)
	case a.ResponseDetails.Status != http.StatusOK:
		return 0, fmt.Errorf("POST %s: the destination answered %d", forwardPath, a.ResponseDetails.Status)
	case a.RequestContext.DestinationDuration < 0:
		return 0, errors.New("a negative destination_duration")
	}
	return time.Duration(a.RequestContext.DestinationDuration) * time.Millisecond, nil
}

// addOverhead puts the forward phase's overhead percentiles into p.
func (b *benchRun) addOverhead(p *PhaseResult) {
	all := flatten(b.fwd.overheads)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	ms := func(q float64) *float64 {
		v := round3(float64(e2e.Percentile(all, q)) / float64(time.Millisecond))
		return &v
	}
	p.OverheadP50Ms, p.OverheadP99Ms = ms(0.50), ms(0.99)
}
