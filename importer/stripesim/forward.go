package stripesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxDestinationBody bounds the destination's answer the simulator keeps.
const maxDestinationBody = 1 << 20

// The replacements the simulator supports, as Stripe names them.
const (
	replCardNumber = "card_number"
	replCardExpiry = "card_expiry"
	replCardCVC    = "card_cvc"
	replName       = "cardholder_name"
)

var supportedReplacements = []string{replCardCVC, replCardExpiry, replCardNumber, replName}

// forwardJSON is Stripe's forwarding.request object.
type forwardJSON struct {
	ID              string            `json:"id"`
	Object          string            `json:"object"`
	Created         int64             `json:"created"`
	Livemode        bool              `json:"livemode"`
	Metadata        map[string]string `json:"metadata"`
	PaymentMethod   string            `json:"payment_method"`
	Replacements    []string          `json:"replacements"`
	RequestContext  requestContext    `json:"request_context"`
	RequestDetails  requestDetails    `json:"request_details"`
	ResponseDetails responseDetails   `json:"response_details"`
	URL             string            `json:"url"`
}

type requestContext struct {
	DestinationDuration  int64  `json:"destination_duration"`
	DestinationIPAddress string `json:"destination_ip_address"`
}

type requestDetails struct {
	Body       string       `json:"body"`
	Headers    []headerJSON `json:"headers"`
	HTTPMethod string       `json:"http_method"`
}

type responseDetails struct {
	Body    string       `json:"body"`
	Headers []headerJSON `json:"headers"`
	Status  int          `json:"status"`
}

type headerJSON struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// forwardParams are the parsed parameters of POST /v1/forwarding/requests.
type forwardParams struct {
	pm           string
	url          string
	body         string
	headers      []headerJSON
	replacements []string
	metadata     map[string]string
}

// has reports whether replacement r was requested.
func (p *forwardParams) has(r string) bool { return slices.Contains(p.replacements, r) }

// createForward answers POST /v1/forwarding/requests: it validates the
// parameters, fills the requested card fields of request[body] from the
// payment method, posts it to url and answers the forwarding.request with
// the destination's status, headers and body. A destination that cannot be
// reached gives a 502 (504 on timeout) "api_error".
func (s *Sim) createForward(ctx context.Context, form url.Values) answer {
	p, bad := parseForwardParams(form)
	if bad != nil {
		return *bad
	}
	if bad := s.checkDestination(p.url); bad != nil {
		return *bad
	}
	s.mu.RLock()
	pm := s.data.pmBy[p.pm]
	s.mu.RUnlock()
	if pm == nil {
		return noSuch("PaymentMethod", p.pm, "payment_method")
	}
	if pm.card == nil {
		return invalidParam("", "payment_method",
			"The Vault and Forward API only forwards card PaymentMethods; this one has type '"+pm.typ+"'.")
	}
	if _, err := parseBody(p.body); err != nil {
		return invalidParam("", "request[body]",
			"request[body] must be a JSON object: the simulator places card fields in its \"card\" object.")
	}
	if s.faultsNow().DestinationDown {
		s.count(func(st *Stats) { st.DestinationErrors++ })
		return unreachable(false)
	}
	sent, masked := fillBodies(p, pm, p.has(replCardCVC) && s.takeCVC(pm.id))
	return s.send(ctx, p, pm, sent, masked)
}

// faultsNow returns the current faults.
func (s *Sim) faultsNow() Faults {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.faults
}

// parseForwardParams reads the form-encoded parameters stripe-go sends
// (payment_method, url, request[body], request[headers][i][name|value],
// replacements[i], metadata[k]); it returns a 400 answer for a missing or
// invalid one.
func parseForwardParams(form url.Values) (*forwardParams, *answer) {
	p := &forwardParams{pm: form.Get("payment_method"), url: form.Get("url"), metadata: map[string]string{}}
	for _, req := range []string{"payment_method", "url", "request[body]"} {
		if strings.TrimSpace(form.Get(req)) == "" {
			a := missingParam(req)
			return nil, &a
		}
	}
	p.body = form.Get("request[body]")
	p.replacements = indexed(form, "replacements")
	if len(p.replacements) == 0 {
		a := missingParam("replacements")
		return nil, &a
	}
	for _, r := range p.replacements {
		if !slices.Contains(supportedReplacements, r) {
			a := invalidParam("", "replacements",
				"Invalid replacements: must be one of card_cvc, card_expiry, card_number or cardholder_name.")
			return nil, &a
		}
	}
	names, values := indexed(form, "request[headers]", "[name]"), indexed(form, "request[headers]", "[value]")
	if len(names) != len(values) {
		a := invalidParam("", "request[headers]", "Each request header needs a name and a value.")
		return nil, &a
	}
	for i, n := range names {
		if !validHeader(n, values[i]) {
			a := invalidParam("", "request[headers]", "Invalid request header name or value.")
			return nil, &a
		}
		p.headers = append(p.headers, headerJSON{Name: n, Value: values[i]})
	}
	for k, v := range form {
		if key, ok := strings.CutPrefix(k, "metadata["); ok && strings.HasSuffix(key, "]") && len(v) > 0 {
			p.metadata[strings.TrimSuffix(key, "]")] = v[0]
		}
	}
	return p, nil
}

// indexed returns the values of name[0]suffix, name[1]suffix, … in index
// order, plus those of name[]suffix.
func indexed(form url.Values, name string, suffix ...string) []string {
	suf := strings.Join(suffix, "")
	type item struct {
		i int
		v string
	}
	var items []item
	for k, vs := range form {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok {
			continue
		}
		idx, tail, ok := strings.Cut(rest, "]")
		if !ok || tail != suf || len(vs) == 0 {
			continue
		}
		if idx == "" {
			for _, v := range vs {
				items = append(items, item{i: 1 << 30, v: v})
			}
			continue
		}
		if i, err := strconv.Atoi(idx); err == nil && i >= 0 {
			items = append(items, item{i: i, v: vs[0]})
		}
	}
	sort.SliceStable(items, func(a, b int) bool { return items[a].i < items[b].i })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out
}

// validHeader reports whether name is an HTTP token and value holds no
// line break.
func validHeader(name, value string) bool {
	if name == "" || strings.ContainsAny(value, "\r\n\x00") {
		return false
	}
	for _, c := range name {
		if c > 0x7e || c <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

// checkDestination returns a 400 "url_invalid" answer unless dest is an
// https URL (or an allowed http one) within AllowedDestinations.
func (s *Sim) checkDestination(dest string) *answer {
	u, err := url.Parse(dest)
	bad := func(msg string) *answer {
		a := invalidParam("url_invalid", "url", msg)
		return &a
	}
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return bad("Invalid URL: the destination must be an absolute https URL.")
	}
	if u.Scheme == "http" && !s.insecure && !loopback(u.Hostname()) {
		return bad("Invalid URL: the destination must use https.")
	}
	if len(s.allowed) > 0 && !slices.ContainsFunc(s.allowed, func(pre string) bool { return strings.HasPrefix(dest, pre) }) {
		return bad("The URL is not a destination configured for forwarding on this account.")
	}
	return nil
}

// loopback reports whether host is localhost or a loopback IP.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseBody decodes request[body] as a JSON object, numbers kept as
// written.
func parseBody(body string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, errors.New("request body is null")
	}
	return doc, nil
}

// fillBodies returns request[body] with the requested card fields set in
// its "card" object (the body sent; the CVC only when withCVC) and the same
// with the number masked and the CVC "***" (the body request_details
// reports). The body must have passed parseBody.
func fillBodies(p *forwardParams, pm *paymentMethod, withCVC bool) (sent, masked []byte) {
	fill := func(number, cvc string) []byte {
		doc, _ := parseBody(p.body)
		card, _ := doc["card"].(map[string]any)
		if card == nil {
			card = map[string]any{}
			doc["card"] = card
		}
		c := pm.card
		if p.has(replCardNumber) {
			card["number"] = number
		}
		if p.has(replCardExpiry) {
			card["exp_month"] = twoDigits(c.ExpMonth)
			card["exp_year"] = strconv.Itoa(c.ExpYear)
		}
		if withCVC {
			card["cvc"] = cvc
		}
		if p.has(replName) {
			card["name"] = c.Name
		}
		return marshal(doc)
	}
	return fill(pm.card.Number, pm.card.CVC), fill(mask(pm.card.Number), "***")
}

// takeCVC reports whether the payment method's CVC can be forwarded now,
// and with ConsumeCVC marks it used.
func (s *Sim) takeCVC(pmID string) bool {
	f := s.faultsNow()
	if f.ExpiredCVC {
		return false
	}
	if !f.ConsumeCVC {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cvcUsed[pmID] {
		return false
	}
	s.cvcUsed[pmID] = true
	return true
}

// twoDigits renders a month like Stripe does ("03").
func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// send performs the forward and answers the forwarding.request.
func (s *Sim) send(ctx context.Context, p *forwardParams, pm *paymentMethod, sent, masked []byte) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(sent))
	if err != nil {
		return invalidParam("url_invalid", "url", "Invalid URL.")
	}
	for _, h := range p.headers {
		req.Header.Add(h.Name, h.Value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Stripe")
	req.Header.Set("Accept", "*/*")
	var (
		remoteMu sync.Mutex
		remote   string
	)
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if host, _, err := net.SplitHostPort(info.Conn.RemoteAddr().String()); err == nil {
				remoteMu.Lock()
				remote = host
				remoteMu.Unlock()
			}
		},
	}))

	s.count(func(st *Stats) {
		st.Forwards++
		st.ForwardsByPM[pm.id]++
	})
	start := time.Now()
	resp, err := s.client.Do(req)
	var respBody []byte
	if err == nil {
		respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxDestinationBody))
		resp.Body.Close()
	}
	elapsed := time.Since(start)
	if err != nil {
		s.count(func(st *Stats) { st.DestinationErrors++ })
		return unreachable(isTimeout(err))
	}
	remoteMu.Lock()
	ip := remote
	remoteMu.Unlock()

	fwd := forwardJSON{
		ID: s.newID("fwdreq_"), Object: "forwarding.request", Created: time.Now().Unix(),
		Metadata: p.metadata, PaymentMethod: pm.id, Replacements: p.replacements, URL: p.url,
		RequestContext: requestContext{DestinationDuration: elapsed.Milliseconds(), DestinationIPAddress: ip},
		RequestDetails: requestDetails{Body: string(masked), Headers: reportedHeaders(p.headers), HTTPMethod: http.MethodPost},
		ResponseDetails: responseDetails{
			// Stripe redacts PCI data it recognises in the destination's answer.
			Body:    strings.ReplaceAll(string(respBody), pm.card.Number, mask(pm.card.Number)),
			Headers: responseHeaders(resp.Header),
			Status:  resp.StatusCode,
		},
	}
	body := marshal(fwd)
	s.mu.Lock()
	s.forwards[fwd.ID] = body
	s.mu.Unlock()
	return answer{status: http.StatusOK, body: body}
}

// retrieveForward answers GET /v1/forwarding/requests/{id}.
func (s *Sim) retrieveForward(id string) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	body, ok := s.forwards[id]
	if !ok {
		return noSuch("forwarding.request", id, "id")
	}
	return answer{status: http.StatusOK, body: body}
}

// unreachable is the answer for a destination that could not be reached:
// 502 (504 after a timeout), type "api_error", stored for idempotent
// replay and marked not retryable with the same key.
func unreachable(timeout bool) answer {
	a := stripeError(http.StatusBadGateway, "api_error", "forwarding_destination_unreachable", "url",
		"The destination endpoint could not be reached.")
	if timeout {
		a = stripeError(http.StatusGatewayTimeout, "api_error", "forwarding_destination_timeout", "url",
			"The destination endpoint did not answer in time.")
	}
	a.shouldRetry = "false"
	return a
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// reportedHeaders are the headers request_details shows: Content-Type, then
// the given ones, credentials redacted as Stripe does.
func reportedHeaders(given []headerJSON) []headerJSON {
	out := []headerJSON{{Name: "Content-Type", Value: "application/json"}}
	for _, h := range given {
		if sensitiveHeader(h.Name) {
			h.Value = "[REDACTED]"
		}
		out = append(out, h)
	}
	return out
}

// sensitiveHeader reports whether a header probably carries a credential.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"key", "auth", "secret", "token", "password", "signature", "cookie"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// responseHeaders lists the destination's headers sorted by name.
func responseHeaders(h http.Header) []headerJSON {
	out := []headerJSON{}
	for _, name := range slices.Sorted(maps.Keys(h)) {
		v := strings.Join(h[name], ", ")
		if sensitiveHeader(name) {
			v = "[REDACTED]"
		}
		out = append(out, headerJSON{Name: name, Value: v})
	}
	return out
}
