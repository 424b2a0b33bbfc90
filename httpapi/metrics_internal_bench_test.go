package httpapi

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardvault/cardvault/internal/metrics"
)

// BenchmarkAccessLog is the per-request cost of the access-log middleware
// around a handler that does nothing, the log discarded: what every
// request pays for being logged and, with metrics on, counted (requests by
// route, method and code, the latency histogram, the in-flight gauge).
func BenchmarkAccessLog(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    *metrics.HTTP
	}{
		{"metrics=off", nil},
		{"metrics=on", metrics.NewHTTP(prometheus.NewRegistry())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := echo.New()
			s := &Server{log: slog.New(slog.DiscardHandler), metrics: bc.m}
			noop := func(c echo.Context) error { return c.NoContent(204) }
			e.GET("/tokens/:id", noop)
			s.routeMetrics = s.metrics.Routes(routePatterns(e))
			h := s.accessLog(noop)
			req := httptest.NewRequest("GET", "/tokens/4f1c2a60-2c8e-4b8e-9a37-8f4f8d3a9e11", nil)
			c := e.NewContext(req, httptest.NewRecorder())
			c.SetPath("/tokens/:id")
			b.ReportAllocs()
			for b.Loop() {
				c.Response().Committed = false
				if err := h(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
