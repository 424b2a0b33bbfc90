package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardvault/cardvault/internal/metrics"
)

// BenchmarkRecordRequest is what recording one request costs the HTTP API:
// the in-flight count, the route's lookup, its counter and its histogram.
func BenchmarkRecordRequest(b *testing.B) {
	h := metrics.NewHTTP(prometheus.NewRegistry())
	table := h.Routes([]metrics.Pattern{{Method: "GET", Path: "/tokens/:id"}, {Method: "POST", Path: "/tokens"},
		{Method: "POST", Path: "/tokens/:id/detokenize"}, {Method: "GET", Path: "/tokens"}})
	b.ReportAllocs()
	for b.Loop() {
		h.Start()
		table.Lookup("GET", "/tokens/:id").Observe(200, 3*time.Millisecond)
		h.Done()
	}
}

// BenchmarkRecordRequestParallel is BenchmarkRecordRequest from every CPU
// at once on one route: the counters' cache lines shared.
func BenchmarkRecordRequestParallel(b *testing.B) {
	h := metrics.NewHTTP(prometheus.NewRegistry())
	table := h.Routes([]metrics.Pattern{{Method: "GET", Path: "/tokens/:id"}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Start()
			table.Lookup("GET", "/tokens/:id").Observe(200, 3*time.Millisecond)
			h.Done()
		}
	})
}
