// Package metrics is the vault's Prometheus vocabulary: the recorder types
// the HTTP API, the PostgreSQL implementation, the importer, the webhook
// deliverer and forwarding record through, and the collectors that read the
// database and the pool at scrape time. It imports nothing else of the
// vault, so every package may depend on it.
//
// Every recorder is built on a prometheus.Registerer handed to it (cmd
// creates one prometheus.NewRegistry per process; there is no global
// registry), and every method works on a nil recorder and records nothing,
// so code and tests without metrics need no setup.
//
// Labels are bounded and never hold what identifies a card, a customer or
// a credential: no card data, business key, token id, API key or tenant id
// is ever a label value (nor in a metric name or help text). The only label
// whose values come from data is a forward's destination id, which the
// recorder caps (see Forwards). Route labels are the route's pattern
// (/tokens/:id), never a request's URL.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every metric of the vault.
const namespace = "cardvault"

// RegisterRuntime registers the Go runtime, process and build-info
// collectors on reg. It returns an error when one is registered already.
func RegisterRuntime(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler returns the handler of GET /metrics serving what reg gathers in
// the Prometheus text (or OpenMetrics, when asked) format. A collector that
// fails is reported in the log of the scrape, not by failing the scrape.
func Handler(reg prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		Timeout:           10 * time.Second, // the state collector bounds itself far below this
	})
}

// mustRegister registers cs on reg, panicking on a duplicate: the recorders
// are built once per registry at startup, so a duplicate is a wiring bug.
func mustRegister(reg prometheus.Registerer, cs ...prometheus.Collector) {
	reg.MustRegister(cs...)
}
