package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ItemOutcome is how one attempt at an import item ended, or that an item
// was skipped.
type ItemOutcome int

// The import item outcomes.
const (
	ItemSucceeded ItemOutcome = iota // the card is a token now
	ItemFailed                       // given up: a permanent failure or attempts used up
	ItemRetried                      // failed, another attempt is scheduled
	ItemThrottled                    // the provider asked to slow down; retried without using an attempt
	ItemSkipped                      // not importable (a Link payment method)
	itemOutcomeCount
)

var itemOutcomeNames = [itemOutcomeCount]string{"succeeded", "failed", "retried", "throttled", "skipped"}

// Imports records import jobs' items by outcome (the jobs by status are read
// from the database at scrape time, see State). A nil *Imports records
// nothing.
type Imports struct {
	items [itemOutcomeCount]prometheus.Counter
}

// NewImports returns an Imports recorder registered on reg. It panics when
// its metrics are registered on reg already.
func NewImports(reg prometheus.Registerer) *Imports {
	items := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "import_items_total",
		Help: "Import item outcomes recorded by this process: succeeded, failed (given up), retried, throttled (provider rate limit), skipped (not a card)."},
		[]string{"outcome"})
	im := &Imports{}
	for i, name := range itemOutcomeNames {
		im.items[i] = items.WithLabelValues(name)
	}
	mustRegister(reg, items)
	return im
}

// Items counts n items that ended an attempt with outcome (or were
// skipped).
func (im *Imports) Items(outcome ItemOutcome, n int) {
	if im == nil || outcome < 0 || outcome >= itemOutcomeCount || n <= 0 {
		return
	}
	im.items[outcome].Add(float64(n))
}

// exportOutcomes are the outcomes an export attempt ends with.
var exportOutcomes = []ItemOutcome{ItemSucceeded, ItemFailed, ItemRetried}

// Exports records export jobs' send attempts by outcome. A nil *Exports
// records nothing.
type Exports struct {
	items [itemOutcomeCount]prometheus.Counter // nil for an outcome exports do not have
}

// NewExports returns an Exports recorder registered on reg. It panics when
// its metrics are registered on reg already.
func NewExports(reg prometheus.Registerer) *Exports {
	items := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "export_items_total",
		Help: "Export item send attempts recorded by this process, by outcome: succeeded, failed (given up), retried (another attempt is scheduled)."},
		[]string{"outcome"})
	e := &Exports{}
	for _, o := range exportOutcomes {
		e.items[o] = items.WithLabelValues(itemOutcomeNames[o])
	}
	mustRegister(reg, items)
	return e
}

// Items counts n export attempts that ended with outcome (ItemSucceeded,
// ItemFailed or ItemRetried; any other is not counted).
func (e *Exports) Items(outcome ItemOutcome, n int) {
	if e == nil || outcome < 0 || outcome >= itemOutcomeCount || n <= 0 || e.items[outcome] == nil {
		return
	}
	e.items[outcome].Add(float64(n))
}

// DeliveryOutcome is how one webhook delivery attempt ended.
type DeliveryOutcome int

// The webhook delivery outcomes, as webhook_deliveries.outcome names them.
const (
	Delivered DeliveryOutcome = iota // the receiver answered 2xx
	Retrying                         // failed; another attempt is scheduled
	GaveUp                           // failed for the last time
	deliveryOutcomeCount
)

var deliveryOutcomeNames = [deliveryOutcomeCount]string{"delivered", "retrying", "gave_up"}

// deliveryBuckets bound the webhook delivery latency histogram, in seconds.
var deliveryBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Webhooks records webhook delivery attempts by outcome and their latency
// (the outbox depth and age are read from the database at scrape time, see
// State). A nil *Webhooks records nothing.
type Webhooks struct {
	deliveries [deliveryOutcomeCount]prometheus.Counter
	latency    prometheus.Histogram
}

// NewWebhooks returns a Webhooks recorder registered on reg. It panics when
// its metrics are registered on reg already.
func NewWebhooks(reg prometheus.Registerer) *Webhooks {
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "webhook_deliveries_total",
		Help: "Webhook delivery attempts made by this process, by outcome: delivered, retrying, gave_up."}, []string{"outcome"})
	w := &Webhooks{latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "webhook_delivery_duration_seconds",
		Help: "Time from sending a webhook to the receiver's answer (or the failure).", Buckets: deliveryBuckets})}
	for i, name := range deliveryOutcomeNames {
		w.deliveries[i] = deliveries.WithLabelValues(name)
	}
	mustRegister(reg, deliveries, w.latency)
	return w
}

// Attempted records one delivery attempt that ended with outcome; sent
// says whether a request went out, taking d.
func (w *Webhooks) Attempted(outcome DeliveryOutcome, sent bool, d time.Duration) {
	if w == nil || outcome < 0 || outcome >= deliveryOutcomeCount {
		return
	}
	w.deliveries[outcome].Inc()
	if sent {
		w.latency.Observe(d.Seconds())
	}
}
