// Package stripesim simulates the part of Stripe's API that cardvault's
// importer uses, closely enough for stripe-go v85 to talk to it: listing
// customers and their payment methods with Stripe's cursor pagination,
// checking the API key (GET /v1/account, GET /v1/balance), and the Vault and
// Forward API (POST /v1/forwarding/requests), which it really performs: it
// fills the card fields of the request body from the payment method and posts
// it to the destination URL, like Stripe does.
//
// It keeps everything in memory, is safe for concurrent use, can inject the
// faults the importer must survive (429 bursts, 500s, slow answers, expired
// CVCs, an unreachable destination) and counts what it did (Stats) so tests
// can assert on it. Card numbers are generated, Luhn-valid numbers on public
// test BIN ranges; the simulator never logs card data and never puts a full
// card number in any API answer.
package stripesim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardvault/cardvault/internal/loop"
)

// DefaultAPIKey is the secret key the simulator accepts when Config.APIKeys
// is empty.
const DefaultAPIKey = "sk_test_cardvaultStripeSimulator0000"

// defaultForwardTimeout bounds one forwarded request when Config.Client is
// nil (Stripe's own limit is "less than a minute").
const defaultForwardTimeout = 30 * time.Second

// maxIdleForwardConns is how many idle connections per destination host
// the default forwarding client keeps.
const maxIdleForwardConns = 128

// maxRequestBody bounds the body of an API request to the simulator.
const maxRequestBody = 1 << 20

// Config configures a simulator.
type Config struct {
	// APIKeys are the valid secret keys (sk_test_…). Any other key is
	// answered 401 with code "api_key_invalid". Empty means DefaultAPIKey.
	APIKeys []string
	// AllowedDestinations, when not empty, lists the URL prefixes a
	// forwarding request may target (Stripe only forwards to destinations
	// it has configured); any other URL is answered 400 "url_invalid".
	AllowedDestinations []string
	// AllowInsecureHTTP lets forwarding requests target http:// URLs on any
	// host. Without it only https:// URLs and http:// URLs on a loopback
	// host (127.0.0.0/8, ::1, localhost) are accepted.
	AllowInsecureHTTP bool
	// Client performs the forwarded requests. Nil means a client with a 30 s
	// timeout that does not follow redirects (a 3xx is reported as the
	// destination's status) and keeps up to 128 idle connections per
	// destination host, so concurrent forwards reuse their connections.
	Client *http.Client
}

// Faults are the failures a simulator injects. The zero value injects none.
type Faults struct {
	// RateLimitEvery makes every Nth authenticated API request (counted from
	// the last SetFaults) answer 429 with code "rate_limit"; 0 disables it.
	RateLimitEvery int
	// RateLimitBurst is the length of each run of 429s: the Nth request and
	// the next RateLimitBurst-1 requests are rate limited (0 or 1: one).
	RateLimitBurst int
	// ServerErrorEvery makes every Nth authenticated API request answer 500
	// with type "api_error"; 0 disables it. A POST's 500 is stored under its
	// Idempotency-Key and replayed, as Stripe does, and carries
	// "Stripe-Should-Retry: false": retry with a fresh key.
	ServerErrorEvery int
	// Delay is added before every answer (a slow Stripe).
	Delay time.Duration
	// ExpiredCVC makes every forward carry no CVC, as when Stripe's stored
	// CVC has expired: card.cvc is left as the request body had it.
	ExpiredCVC bool
	// ConsumeCVC makes a payment method's CVC usable for one forward only,
	// as Stripe expires a CVC once the Vault and Forward API has used it.
	ConsumeCVC bool
	// DestinationDown makes every forward fail as if the destination could
	// not be reached: answer 502, type "api_error", code
	// "forwarding_destination_unreachable", and nothing is sent.
	DestinationDown bool
}

// Stats counts what a simulator did since it was created.
type Stats struct {
	Requests          int            // every HTTP request received
	Unauthorized      int            // answered 401
	RateLimited       int            // answered 429 by RateLimitEvery
	ServerErrors      int            // answered 500 by ServerErrorEvery
	Forwards          int            // requests sent to a destination
	ForwardsByPM      map[string]int // Forwards per payment method id
	DestinationErrors int            // forwards whose destination could not be reached (or DestinationDown)
	IdempotentReplays int            // POSTs answered from the idempotency store
}

// Sim is a simulated Stripe API; it implements http.Handler. Create it with
// New, fill it with Seed, and serve it (httptest.NewServer(sim) or Start).
type Sim struct {
	keys        map[string]bool
	allowed     []string
	insecure    bool
	client      *http.Client
	idem        idempotencyStore
	seq         atomic.Uint64
	accountID   string
	accountTime int64

	mu       sync.RWMutex
	data     *dataset
	forwards map[string][]byte // fwdreq id → its JSON
	cvcUsed  map[string]bool

	fmu       sync.Mutex
	faults    Faults
	n         int // authenticated requests since SetFaults
	burstLeft int
	stats     Stats
}

// New returns an empty simulator (no customers until Seed) configured by cfg.
func New(cfg Config) *Sim {
	s := &Sim{
		keys:        make(map[string]bool),
		allowed:     append([]string(nil), cfg.AllowedDestinations...),
		insecure:    cfg.AllowInsecureHTTP,
		client:      cfg.Client,
		idem:        idempotencyStore{entries: make(map[string]*idemEntry)},
		accountID:   "acct_1CardvaultSimultr",
		accountTime: time.Now().Unix(),
		data:        &dataset{},
		forwards:    make(map[string][]byte),
		cvcUsed:     make(map[string]bool),
	}
	if s.client == nil {
		// Like Stripe, report a destination's redirect instead of following it.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = max(t.MaxIdleConns, maxIdleForwardConns), maxIdleForwardConns
		s.client = &http.Client{
			Transport:     t,
			Timeout:       defaultForwardTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	keys := cfg.APIKeys
	if len(keys) == 0 {
		keys = []string{DefaultAPIKey}
	}
	for _, k := range keys {
		s.keys[k] = true
	}
	s.stats.ForwardsByPM = make(map[string]int)
	return s
}

// SetFaults replaces the injected faults and restarts the request count
// that RateLimitEvery and ServerErrorEvery use. It is safe to call while
// serving.
func (s *Sim) SetFaults(f Faults) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.faults = f
	s.n = 0
	s.burstLeft = 0
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	st := s.stats
	st.ForwardsByPM = maps.Clone(s.stats.ForwardsByPM)
	return st
}

// verdict is the fault decided for one request.
type verdict int

const (
	verdictNone verdict = iota
	verdictRateLimit
	verdictServerError
)

// countRequest counts one received request and returns the current faults.
func (s *Sim) countRequest() Faults {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.stats.Requests++
	return s.faults
}

// decide counts one authenticated request and decides its fault.
func (s *Sim) decide() verdict {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.n++
	f := s.faults
	if f.RateLimitEvery > 0 {
		if s.burstLeft > 0 {
			s.burstLeft--
			s.stats.RateLimited++
			return verdictRateLimit
		}
		if s.n%f.RateLimitEvery == 0 {
			s.burstLeft = max(f.RateLimitBurst-1, 0)
			s.stats.RateLimited++
			return verdictRateLimit
		}
	}
	if f.ServerErrorEvery > 0 && s.n%f.ServerErrorEvery == 0 {
		s.stats.ServerErrors++
		return verdictServerError
	}
	return verdictNone
}

// count applies fn to the stats under their lock.
func (s *Sim) count(fn func(*Stats)) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	fn(&s.stats)
}

// newID returns a fresh Stripe-looking id with the given prefix.
func (s *Sim) newID(prefix string) string {
	n := s.seq.Add(1)
	sum := sha256.Sum256(fmt.Appendf(nil, "%s%d%d", prefix, n, time.Now().UnixNano()))
	return prefix + base62(sum[:], 14) + fmt.Sprintf("%06d", n%1000000)
}

// answer is a complete API answer, stored for idempotent replays.
type answer struct {
	status      int
	body        []byte
	shouldRetry string // Stripe-Should-Retry header, "" for none
}

// ServeHTTP answers one API request like Stripe: it authenticates the
// Bearer key, applies the injected faults, replays idempotent POSTs and
// routes the request.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	faults := s.countRequest()
	w.Header().Set("Request-Id", s.newID("req_"))
	if v := r.Header.Get("Stripe-Version"); v != "" {
		w.Header().Set("Stripe-Version", v)
	}
	if loop.Sleep(r.Context(), faults.Delay) != nil {
		return
	}
	apiKey, ok := bearer(r)
	if !ok || !s.keys[apiKey] {
		s.count(func(st *Stats) { st.Unauthorized++ })
		write(w, authError(apiKey))
		return
	}
	v := s.decide()
	if v == verdictRateLimit {
		write(w, stripeError(http.StatusTooManyRequests, "invalid_request_error", "rate_limit", "",
			"Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."))
		return
	}
	if r.Method != http.MethodPost {
		if v == verdictServerError {
			write(w, serverError())
			return
		}
		write(w, s.route(r.Context(), r.Method, r.URL.Path, r.URL.Query()))
		return
	}
	s.servePost(w, r, apiKey, v)
}

// servePost answers a POST: form-encoded body, idempotency, then routing.
func (s *Sim) servePost(w http.ResponseWriter, r *http.Request, apiKey string, v verdict) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		write(w, stripeError(http.StatusBadRequest, "invalid_request_error", "", "", "The request body could not be read."))
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		write(w, stripeError(http.StatusBadRequest, "invalid_request_error", "", "", "The request body is not valid form encoding."))
		return
	}
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if key == "" {
		write(w, s.postAnswer(r, form, v))
		return
	}
	w.Header().Set("Idempotency-Key", key)
	entry, state := s.idem.begin(apiKey, key, r.URL.Path, body)
	switch state {
	case idemReplay:
		s.count(func(st *Stats) { st.IdempotentReplays++ })
		w.Header().Set("Idempotent-Replayed", "true")
		write(w, entry.ans)
		return
	case idemMismatch:
		write(w, stripeError(http.StatusBadRequest, "idempotency_error", "", "",
			"Keys for idempotent requests can only be used with the same parameters they were first used with."))
		return
	case idemInFlight:
		write(w, stripeError(http.StatusConflict, "invalid_request_error", "idempotency_key_in_use", "",
			"There is currently another in-progress request using this Idempotent Key."))
		return
	}
	ans := s.postAnswer(r, form, v)
	s.idem.finish(entry, ans)
	write(w, ans)
}

// postAnswer routes a POST, or answers the injected 500.
func (s *Sim) postAnswer(r *http.Request, form url.Values, v verdict) answer {
	if v == verdictServerError {
		ans := serverError()
		ans.shouldRetry = "false"
		return ans
	}
	return s.route(r.Context(), r.Method, r.URL.Path, form)
}

// route dispatches an authenticated request by method and path.
func (s *Sim) route(ctx context.Context, method, path string, q url.Values) answer {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 || parts[0] != "v1" {
		return unrecognized(method, path)
	}
	p := parts[1:]
	switch {
	case method == http.MethodGet && len(p) == 1 && p[0] == "account":
		return s.account()
	case method == http.MethodGet && len(p) == 1 && p[0] == "balance":
		return balance()
	case method == http.MethodGet && len(p) == 1 && p[0] == "customers":
		return s.listCustomers(q)
	case method == http.MethodGet && len(p) == 2 && p[0] == "customers":
		return s.retrieveCustomer(p[1])
	case method == http.MethodGet && len(p) == 3 && p[0] == "customers" && p[2] == "payment_methods":
		return s.listCustomerPaymentMethods(p[1], q)
	case method == http.MethodGet && len(p) == 4 && p[0] == "customers" && p[2] == "payment_methods":
		return s.retrieveCustomerPaymentMethod(p[1], p[3])
	case method == http.MethodGet && len(p) == 1 && p[0] == "payment_methods":
		return s.listPaymentMethods(q)
	case method == http.MethodGet && len(p) == 2 && p[0] == "payment_methods":
		return s.retrievePaymentMethod(p[1])
	case method == http.MethodPost && len(p) == 2 && p[0] == "forwarding" && p[1] == "requests":
		return s.createForward(ctx, q)
	case method == http.MethodGet && len(p) == 3 && p[0] == "forwarding" && p[1] == "requests":
		return s.retrieveForward(p[2])
	}
	return unrecognized(method, path)
}

// bearer returns the API key of an "Authorization: Bearer sk_…" header
// (or of HTTP basic auth, which Stripe also accepts).
func bearer(r *http.Request) (string, bool) {
	if user, _, ok := r.BasicAuth(); ok {
		return user, user != ""
	}
	h := r.Header.Get("Authorization")
	k, ok := strings.CutPrefix(h, "Bearer ")
	k = strings.TrimSpace(k)
	return k, ok && k != ""
}

// write sends an answer.
func write(w http.ResponseWriter, a answer) {
	w.Header().Set("Content-Type", "application/json")
	if a.shouldRetry != "" {
		w.Header().Set("Stripe-Should-Retry", a.shouldRetry)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// okAnswer is a 200 answer with v as its JSON body.
func okAnswer(v any) answer {
	return answer{status: http.StatusOK, body: marshal(v)}
}

// marshal encodes v as JSON without HTML escaping; the simulator's own
// values always encode.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("stripesim: encoding %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
