package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Unmatched is the route label of a request that matched no route (a 404
// for an unknown path, a 405 for a method the path does not take).
const Unmatched = "unmatched"

// latencyBuckets are the bounds of the request latency histograms, in
// seconds: the vault answers in milliseconds, and a request is cut off at
// 15 s.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15}

// Refusal names why a request was refused before it was served.
type Refusal int

// The refusals of the HTTP API.
const (
	// RefusedRateLimited is an API key over its request rate (429).
	RefusedRateLimited Refusal = iota
	// RefusedAuthFailures is a client address over its failed
	// authentications (429).
	RefusedAuthFailures
	// RefusedOverloaded is a request over the in-flight cap (503).
	RefusedOverloaded
	refusalCount
)

var refusalNames = [refusalCount]string{"rate_limited", "auth_failures", "overloaded"}

// HTTP records the HTTP API: requests by route pattern, method and status
// code, latency by route pattern and method, requests in flight, and
// refusals by reason. A nil *HTTP records nothing.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight atomic.Int64 // read at scrape time: cheaper than a Gauge's compare-and-swap
	refusals [refusalCount]prometheus.Counter
}

// NewHTTP returns an HTTP recorder registered on reg. It panics when its
// metrics are registered on reg already.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP API requests answered, by route pattern, method and status code."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "http_request_duration_seconds",
			Help: "Time to answer an HTTP API request, by route pattern and method.", Buckets: latencyBuckets}, []string{"route", "method"}),
	}
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "http_requests_in_flight",
		Help: "HTTP API requests being served."}, func() float64 { return float64(h.inflight.Load()) })
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "http_refusals_total",
		Help: "HTTP API requests refused before being served: rate_limited (API key over its rate), auth_failures (address over its failed authentications), overloaded (in-flight cap)."},
		[]string{"reason"})
	for i, name := range refusalNames {
		h.refusals[i] = refusals.WithLabelValues(name)
	}
	mustRegister(reg, h.requests, h.duration, inflight, refusals)
	return h
}

// Refused counts one request refused for reason.
func (h *HTTP) Refused(reason Refusal) {
	if h == nil || reason < 0 || reason >= refusalCount {
		return
	}
	h.refusals[reason].Inc()
}

// Start counts a request in flight; call Done when it is answered.
func (h *HTTP) Start() {
	if h != nil {
		h.inflight.Add(1)
	}
}

// Done counts a request in flight as answered.
func (h *HTTP) Done() {
	if h != nil {
		h.inflight.Add(-1)
	}
}

// Pattern is one route: its method and its pattern as the router knows it
// (such as /tokens/:id).
type Pattern struct{ Method, Path string }

// Routes returns the table of the recorders of routes, resolved once so
// that recording a request looks up one map entry and allocates nothing.
// It returns nil for a nil *HTTP.
func (h *HTTP) Routes(routes []Pattern) *RouteTable {
	if h == nil {
		return nil
	}
	t := &RouteTable{routes: make(map[string]*[methodCount]*Route, len(routes))}
	for _, r := range routes {
		i := methodIndex(r.Method)
		if i == otherMethod || r.Path == "" {
			continue
		}
		byMethod := t.routes[r.Path]
		if byMethod == nil {
			byMethod = new([methodCount]*Route)
			t.routes[r.Path] = byMethod
		}
		byMethod[i] = h.route(methods[i], r.Path)
	}
	for i, m := range methods {
		t.unmatched[i] = h.route(m, Unmatched)
	}
	return t
}

// methods are the method label values, in methodIndex's order; any other
// method is "OTHER".
var methods = [methodCount]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, "OTHER"}

const (
	methodCount = 8
	otherMethod = methodCount - 1
)

// methodIndex returns the index of m's label in methods.
func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodOptions:
		return 6
	}
	return otherMethod
}

func (h *HTTP) route(method, pattern string) *Route {
	r := &Route{requests: h.requests.MustCurryWith(prometheus.Labels{"route": pattern, "method": method}),
		duration: h.duration.WithLabelValues(pattern, method)}
	r.codes.Store(&[]codeCounter{})
	return r
}

// RouteTable resolves a request's method and route pattern to its
// recorder. A nil *RouteTable records nothing.
type RouteTable struct {
	routes    map[string]*[methodCount]*Route // by pattern, then method
	unmatched [methodCount]*Route
}

// Lookup returns the recorder of a request with method whose route pattern
// is pattern; a pair the table does not hold is recorded as Unmatched. It
// returns nil for a nil table.
func (t *RouteTable) Lookup(method, pattern string) *Route {
	if t == nil {
		return nil
	}
	i := methodIndex(method)
	if byMethod, ok := t.routes[pattern]; ok && byMethod[i] != nil {
		return byMethod[i]
	}
	return t.unmatched[i]
}

// Route records the requests of one route and method. A nil *Route records
// nothing.
type Route struct {
	requests *prometheus.CounterVec // curried with the route and method
	duration prometheus.Observer
	// codes holds a counter per status code seen (a route answers a
	// handful), replaced (copied) under mu when a new code appears, so that
	// reading it takes no lock.
	codes atomic.Pointer[[]codeCounter]
	mu    sync.Mutex
}

// codeCounter is the counter of one status code.
type codeCounter struct {
	code int
	c    prometheus.Counter
}

// Observe records one request answered with status code after d.
func (r *Route) Observe(code int, d time.Duration) {
	if r == nil {
		return
	}
	r.counter(code).Inc()
	r.duration.Observe(d.Seconds())
}

// counter returns the counter of code, making it on first use.
func (r *Route) counter(code int) prometheus.Counter {
	if code < 100 || code > 599 {
		code = 0 // one "other" entry, however many odd codes appear
	}
	if c := find(*r.codes.Load(), code); c != nil {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.codes.Load()
	if c := find(old, code); c != nil {
		return c
	}
	c := r.requests.WithLabelValues(codeLabel(code))
	next := append(append(make([]codeCounter, 0, len(old)+1), old...), codeCounter{code, c})
	r.codes.Store(&next)
	return c
}

// find returns the counter of code in codes, or nil.
func find(codes []codeCounter, code int) prometheus.Counter {
	for _, cc := range codes {
		if cc.code == code {
			return cc.c
		}
	}
	return nil
}

// codeLabel is the code label of an HTTP status: its three digits, or
// "other" outside 100–599.
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}
