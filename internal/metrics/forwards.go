package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The outcomes of a forward, the values Forwards accepts; any other is
// recorded as "other".
const (
	ForwardOK          = "ok"                // the destination answered (any status: forwarding passes it on)
	ForwardDestination = "destination_error" // the destination answered 5xx
	ForwardUnreachable = "unreachable"       // no answer: connection refused, TLS failure, timeout
	ForwardRefused     = "refused"           // refused before sending: allow-list, egress policy, missing CVC
)

var forwardOutcomes = map[string]bool{ForwardOK: true, ForwardDestination: true, ForwardUnreachable: true, ForwardRefused: true}

// DefaultMaxDestinations is how many distinct destination ids Forwards
// labels before it records further ones as "other".
const DefaultMaxDestinations = 200

// Label values Forwards uses instead of a destination id.
const (
	DestinationOther   = "other"   // past the cap of distinct ids
	DestinationInvalid = "invalid" // not an id: see ForwardObserved
)

// maxDestinationIDLen bounds a destination id used as a label value.
const maxDestinationIDLen = 64

// forwardBuckets bound the destination latency histogram, in seconds.
var forwardBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30, 60}

// Forwards records forwards of card data to third-party destinations: a
// counter by destination id and outcome and the destination's latency by
// destination id. A destination id is the id of an entry of a tenant's
// allow-list: bounded per tenant, but not across tenants, so Forwards
// labels at most a fixed number of distinct ids (DefaultMaxDestinations
// unless told otherwise) and records the rest as "other". No tenant id is
// a label. A nil *Forwards records nothing.
type Forwards struct {
	max      int
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu    sync.RWMutex
	known map[string]*destination
}

// destination is one destination id's resolved series.
type destination struct {
	outcomes map[string]prometheus.Counter
	latency  prometheus.Observer
}

// NewForwards returns a Forwards recorder registered on reg that labels at
// most maxDestinations distinct destination ids (DefaultMaxDestinations
// when 0 or less). It panics when its metrics are registered on reg
// already.
func NewForwards(reg prometheus.Registerer, maxDestinations int) *Forwards {
	if maxDestinations <= 0 {
		maxDestinations = DefaultMaxDestinations
	}
	f := &Forwards{max: maxDestinations, known: map[string]*destination{},
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "forwards_total",
			Help: "Forwards of card data to a destination, by destination id (capped, see docs/operations.md) and outcome: ok, destination_error, unreachable, refused, other."},
			[]string{"destination", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "forward_destination_duration_seconds",
			Help: "Time from sending a forward to the destination's answer, by destination id (capped).", Buckets: forwardBuckets},
			[]string{"destination"}),
	}
	mustRegister(reg, f.calls, f.duration)
	return f
}

// ForwardObserved records one forward to destinationID that ended with
// outcome (one of the Forward… constants) after d, the destination's time
// (0 when nothing was sent: the latency is then not observed). An id that
// is empty, longer than 64 bytes, holds anything but letters, digits and
// "_-.:" or a run of 12 or more digits is recorded as "invalid", so no
// card number can become a label whatever the caller passes.
func (f *Forwards) ForwardObserved(destinationID, outcome string, d time.Duration) {
	if f == nil {
		return
	}
	dst := f.destination(destinationID)
	c, ok := dst.outcomes[outcome]
	if !ok {
		c = dst.outcomes[DestinationOther]
	}
	c.Inc()
	if d > 0 {
		dst.latency.Observe(d.Seconds())
	}
}

// destination returns id's series, resolving them on first use.
func (f *Forwards) destination(id string) *destination {
	if !validDestinationID(id) {
		id = DestinationInvalid
	}
	f.mu.RLock()
	dst, ok := f.known[id]
	f.mu.RUnlock()
	if ok {
		return dst
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if dst, ok := f.known[id]; ok {
		return dst
	}
	label := id
	if len(f.known) >= f.max && id != DestinationInvalid {
		label = DestinationOther
		if dst, ok := f.known[label]; ok {
			return dst
		}
	}
	dst = f.resolve(label)
	f.known[label] = dst
	return dst
}

// resolve makes the series of one destination label.
func (f *Forwards) resolve(label string) *destination {
	dst := &destination{outcomes: map[string]prometheus.Counter{}, latency: f.duration.WithLabelValues(label)}
	for o := range forwardOutcomes {
		dst.outcomes[o] = f.calls.WithLabelValues(label, o)
	}
	dst.outcomes[DestinationOther] = f.calls.WithLabelValues(label, "other")
	return dst
}

// validDestinationID reports whether id may be a label value (see
// ForwardObserved).
func validDestinationID(id string) bool {
	if id == "" || len(id) > maxDestinationIDLen {
		return false
	}
	digits := 0
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			if digits++; digits >= 12 {
				return false
			}
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-', c == '.', c == ':':
		default:
			return false
		}
		digits = 0
	}
	return true
}
