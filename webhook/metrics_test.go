package webhook_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
	"github.com/cardvault/cardvault/webhook"
)

func TestDeliveryOutcomesAreCounted(t *testing.T) {
	quickGiveUp := webhook.RetryPolicy{First: time.Minute, Max: time.Minute, GiveUpAfter: time.Minute}
	tests := []struct {
		name   string
		status func(n int) int
		events int
		retry  webhook.RetryPolicy
		want   map[string]float64 // webhook_deliveries_total by outcome
	}{
		{"the first attempt fails, the rest succeed", func(n int) int {
			if n == 0 {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		}, 2, webhook.DefaultRetry, map[string]float64{"delivered": 2, "retrying": 1, "gave_up": 0}},
		{"the receiver always fails", always(http.StatusServiceUnavailable), 1, quickGiveUp,
			map[string]float64{"delivered": 0, "retrying": 1, "gave_up": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			rcv := newReceiver(t, tt.status)
			e.setWebhook(t, rcv.URL)
			for i := range tt.events {
				e.tokenize(t, fmt.Sprintf("pm_metrics_%d", i), "4242424242424242", "04")
			}
			reg := prometheus.NewRegistry()
			d := e.deliverer(webhook.WithRetry(tt.retry), webhook.WithMetrics(metrics.NewWebhooks(reg)))

			attempts := deliverDue(t, d)
			e.clock.Advance(2 * time.Hour) // past the first retry's wait
			attempts += deliverDue(t, d)

			out := metricstest.Expose(t, reg)
			for outcome, want := range tt.want {
				assert.Equal(t, want, metricstest.Value(t, out, fmt.Sprintf(`cardvault_webhook_deliveries_total{outcome=%q}`, outcome)), outcome)
			}
			assert.Equal(t, float64(attempts), metricstest.Value(t, out, "cardvault_webhook_delivery_duration_seconds_count"),
				"every attempt sent is timed")
			assert.NotContains(t, string(out), "pm_metrics_")
			assert.NotContains(t, string(out), rcv.URL)
		})
	}
}
