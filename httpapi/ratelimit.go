package httpapi

import (
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// Limits configures the request budgets of a Server. A zero field disables
// its limit; the zero Limits (what New uses without WithLimits) limits
// nothing.
type Limits struct {
	// Rate is the sustained requests per second allowed per API key, and
	// Burst the size of its token bucket (Rate rounded up when 0).
	Rate  float64
	Burst int
	// AuthFailures is the failed authentications allowed per minute per
	// client address (also its burst). Past it, a request from the address
	// whose key fails answers 429 instead of 401; a valid key is never
	// refused by it.
	AuthFailures int
	// MaxInflight caps the API requests served at once; more are answered
	// 503 at once instead of queuing. /healthz and /readyz are not capped.
	MaxInflight int
	// TrustedProxies are the peers (load balancers, reverse proxies) whose
	// X-Forwarded-For header is believed: from them the client address is
	// the right-most hop of the header outside these ranges. From any other
	// peer the header is ignored and the peer's address is the client's.
	TrustedProxies []netip.Prefix
	// Now is the clock of the token buckets; time.Now when nil.
	Now func() time.Time
}

// DefaultLimits are the limits of `cardvault serve` when no VAULT_RATE_*,
// VAULT_AUTH_FAILURE_LIMIT or VAULT_MAX_INFLIGHT setting overrides them.
var DefaultLimits = Limits{Rate: 100, Burst: 200, AuthFailures: 30, MaxInflight: 256}

// maxBuckets bounds each map of token buckets, so that neither many API keys
// nor many client addresses can grow memory without bound.
const maxBuckets = 10_000

// WithLimits sets the per-key rate limit, the failed-authentication budget
// and the in-flight cap.
func WithLimits(l Limits) Option {
	return func(s *Server) {
		s.safety = newRequestSafety(l)
		s.echo.IPExtractor = clientAddress(l.TrustedProxies)
	}
}

// clientAddress returns how a request's client address is read: the TCP
// peer, or, when the peer is one of trusted, the right-most address of
// X-Forwarded-For that is not (echo's extractor, trusting nothing by
// default: neither loopback nor private ranges unless listed).
func clientAddress(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// requestSafety is a Server's request budgets; its zero value limits nothing.
type requestSafety struct {
	now       func() time.Time
	keys      *buckets[uuid.UUID] // per API key; nil when unlimited
	authFails *buckets[string]    // failed authentications per client address; nil when unlimited
	inflight  *fairSlots          // the requests in flight, shared per tenant; nil when uncapped
}

func newRequestSafety(l Limits) requestSafety {
	rs := requestSafety{now: l.Now}
	if l.Rate > 0 {
		burst := l.Burst
		if burst <= 0 {
			burst = int(math.Ceil(l.Rate))
		}
		rs.keys = newBuckets[uuid.UUID](rate.Limit(l.Rate), burst, maxBuckets)
	}
	if l.AuthFailures > 0 {
		rs.authFails = newBuckets[string](rate.Limit(float64(l.AuthFailures)/60), l.AuthFailures, maxBuckets)
	}
	rs.inflight = newFairSlots(l.MaxInflight)
	return rs
}

func (rs requestSafety) clock() time.Time {
	if rs.now == nil {
		return time.Now()
	}
	return rs.now()
}

// buckets is a bounded map of token buckets.
type buckets[K comparable] struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[K]*rate.Limiter
}

func newBuckets[K comparable](limit rate.Limit, burst, max int) *buckets[K] {
	return &buckets[K]{limit: limit, burst: burst, max: max, m: make(map[K]*rate.Limiter)}
}

// get returns key's bucket, making a full one when it has none.
func (b *buckets[K]) get(key K, now time.Time) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.m[key]; ok {
		return l
	}
	if len(b.m) >= b.max {
		b.evict(now)
	}
	l := rate.NewLimiter(b.limit, b.burst)
	b.m[key] = l
	return l
}

// peek returns key's bucket, or nil when it has none.
func (b *buckets[K]) peek(key K) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[key]
}

// evict drops every bucket that has refilled: forgetting one loses nothing,
// since a new bucket starts full. When none has, it drops an arbitrary
// eighth of them, so that insertion stays cheap on average.
func (b *buckets[K]) evict(now time.Time) {
	for k, l := range b.m {
		if l.TokensAt(now) >= float64(b.burst) {
			delete(b.m, k)
		}
	}
	for k := range b.m {
		if len(b.m) < b.max-b.max/8 {
			return
		}
		delete(b.m, k)
	}
}

// len returns how many buckets are kept.
func (b *buckets[K]) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// take spends one token of key's bucket. When it is empty it returns false
// and how long until a token is back.
func (b *buckets[K]) take(key K, now time.Time) (time.Duration, bool) {
	l := b.get(key, now)
	if l.AllowN(now, 1) {
		return 0, true
	}
	return b.wait(l, now), false
}

// wait returns how long until l holds a whole token.
func (b *buckets[K]) wait(l *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - l.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(b.limit) * float64(time.Second))
}

// limitInflight answers 503 overloaded at once when MaxInflight requests
// are already being served, or when the request's holder (its API key, else
// its address) holds its fair share of them; health probes are never
// capped. After authentication the slot moves to the tenant
// (shareInflight).
func (s *Server) limitInflight(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		f := s.safety.inflight
		if f == nil || c.Path() == "/healthz" || c.Path() == "/readyz" {
			return next(c)
		}
		sl := &slot{slots: f, holder: preAuthHolder(c)}
		if !f.acquire(sl.holder) {
			s.metrics.Refused(metrics.RefusedOverloaded)
			return overloaded()
		}
		defer func() { f.release(sl.holder) }()
		c.Set(ctxSlot, sl)
		return next(c)
	}
}

// limitKey answers 429 rate_limited when the authenticated API key has spent
// its bucket.
func (s *Server) limitKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		b := s.safety.keys
		if b == nil {
			return next(c)
		}
		if wait, ok := b.take(actor(c).APIKeyID, s.safety.clock()); !ok {
			s.metrics.Refused(metrics.RefusedRateLimited)
			return rateLimited(c, wait, "too many requests for this API key; retry after the Retry-After seconds")
		}
		return next(c)
	}
}

// limitAuthFailures charges each failed authentication to the client
// address; once the address has spent its budget, a failure answers 429
// rate_limited with Retry-After instead of 401. It only ever slows
// failures: a valid key from the same address is served, so that nobody
// sharing a NAT or a load balancer with an attacker is locked out.
func (s *Server) limitAuthFailures(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		b := s.safety.authFails
		if b == nil {
			return next(c)
		}
		err := next(c)
		if vault.ErrorKind(err) != vault.KindUnauthenticated {
			return err
		}
		if wait, ok := b.take(c.RealIP(), s.safety.clock()); !ok {
			s.metrics.Refused(metrics.RefusedAuthFailures)
			return rateLimited(c, wait, "too many failed authentications from this address; retry after the Retry-After seconds")
		}
		return err
	}
}

// rateLimited sets Retry-After to wait in whole seconds, rounded up, and
// returns the 429 error.
func rateLimited(c echo.Context, wait time.Duration, msg string) error {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	return &vault.Error{Kind: vault.KindRateLimited, Code: vault.CodeRateLimited, Message: msg}
}
