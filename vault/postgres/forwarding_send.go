package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/cardvault/cardvault/egress"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// exchangeResult is how a forward's exchange with its destination went.
type exchangeResult struct {
	status   int // the destination's HTTP status; 0 when none came
	header   http.Header
	body     []byte        // card data may be echoed in it: redact before keeping
	duration time.Duration // from sending to the end of the answer
	ip       string        // the address the request went to; "" when none was reached
	err      *vault.Error  // nil when an answer came whole
}

// exchange sends p's request through the egress client with the
// destination's timeout and client certificate, and reads the answer. It
// runs to its end whatever becomes of the merchant's request, so that the
// outcome of a card that has left is always recorded.
func (s *Service) exchange(ctx context.Context, p *preparedForward) exchangeResult {
	res := s.exchangeOnce(ctx, p)
	s.forwardMetrics.ForwardObserved(p.rec.DestinationID, forwardOutcome(res), res.duration)
	return res
}

// forwardOutcome names how an exchange went, for the metrics.
func forwardOutcome(res exchangeResult) string {
	switch {
	case res.err != nil:
		return metrics.ForwardUnreachable
	case res.status >= 500:
		return metrics.ForwardDestination
	}
	return metrics.ForwardOK
}

// exchangeOnce is exchange without the recording.
func (s *Service) exchangeOnce(ctx context.Context, p *preparedForward) exchangeResult {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.dest.Timeout())
	defer cancel()
	var info egress.ConnInfo
	req, err := http.NewRequestWithContext(egress.WithConnInfo(ctx, &info), http.MethodPost, p.rec.URL, bytes.NewReader(p.body))
	if err != nil {
		return exchangeResult{err: forwardFailure(vault.CodeForwardConnectionError, p.rec.ID, err)}
	}
	req.Header = p.header.Clone()
	client := s.egress.For(egress.Options{Timeout: p.dest.Timeout(), Certificate: p.cert})
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return exchangeResult{duration: time.Since(start), ip: remoteIP(info), err: failureOf(err, p.rec.ID)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	res := exchangeResult{status: resp.StatusCode, header: resp.Header, body: body, duration: time.Since(start), ip: remoteIP(info)}
	if err != nil {
		res.body, res.err = nil, failureOf(err, p.rec.ID)
	}
	return res
}

// remoteIP is the address a request went to, "" when none was reached.
func remoteIP(info egress.ConnInfo) string {
	if !info.RemoteAddr.IsValid() {
		return ""
	}
	return info.RemoteAddr.Addr().Unmap().String()
}

// failureOf classifies why an exchange gave no usable answer.
func failureOf(err error, id string) *vault.Error {
	var netErr net.Error
	switch {
	case errors.Is(err, egress.ErrBodyTooLarge):
		return forwardFailure(vault.CodeForwardUpstreamError, id, err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return forwardFailure(vault.CodeForwardTimeout, id, err)
	}
	return forwardFailure(vault.CodeForwardConnectionError, id, err)
}

// forwardFailure is the error a forward without a usable answer is
// answered with, naming its record; cause is kept for the log.
func forwardFailure(code, id string, cause error) *vault.Error {
	e := &vault.Error{Kind: vault.KindUpstream, Code: code, Err: cause}
	switch code {
	case vault.CodeForwardTimeout:
		e.Kind, e.Message = vault.KindUpstreamTimeout, "the destination did not answer in time"
	case vault.CodeForwardUpstreamError:
		e.Message = "the destination's answer was larger than the vault keeps (1 MiB)"
	default:
		e.Message = "the destination could not be reached"
	}
	if errors.Is(cause, egress.ErrRefused) {
		e.Message = "the destination's address is not allowed"
	}
	e.Message += " (forwarding request " + id + ")"
	return e
}
