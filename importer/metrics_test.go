package importer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
)

func TestImportItemOutcomesAreCounted(t *testing.T) {
	tests := []struct {
		name   string
		faults stripesim.Faults
		want   map[string]float64 // import_items_total by outcome
	}{
		{"every card imported", stripesim.Faults{},
			map[string]float64{"succeeded": 9, "skipped": 3, "failed": 0, "retried": 0}},
		{"destination down: each card retried once, then given up", stripesim.Faults{DestinationDown: true},
			map[string]float64{"succeeded": 0, "skipped": 3, "failed": 9, "retried": 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, stripesim.SeedSpec{Customers: 3, PaymentMethods: 12, LinkEvery: 4, Seed: 8})
			w.sim.SetFaults(tt.faults)
			reg := prometheus.NewRegistry()
			stop := w.runner("r1", func(c *importer.Config) { c.MaxAttempts = 2; c.Metrics = metrics.NewImports(reg) })

			got := w.await(w.start().ID, 30*time.Second)
			stop() // returns once every attempt is written, and counted

			require.Equal(t, "finished", got.Status)
			out := metricstest.Expose(t, reg)
			for outcome, want := range tt.want {
				require.Equal(t, want, metricstest.Value(t, out, fmt.Sprintf(`cardvault_import_items_total{outcome=%q}`, outcome)), outcome)
			}
			for _, pm := range w.sim.PaymentMethods() {
				require.NotContains(t, string(out), pm.ID, "no payment method id (a business key) is a label")
			}
		})
	}
}
