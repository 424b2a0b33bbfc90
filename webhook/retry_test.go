package webhook_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/webhook"
)

func TestDefaultRetrySchedule(t *testing.T) {
	p := webhook.DefaultRetry
	first := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{1, 0.5, 30 * time.Second},
		{2, 0.5, time.Minute},
		{3, 0.5, 2 * time.Minute},
		{7, 0.5, 32 * time.Minute},
		{8, 0.5, time.Hour},
		{50, 0.5, time.Hour},
		{1, 0, 24 * time.Second},            // -20 %
		{1, 0.9999999999, 36 * time.Second}, // +20 %
		{9, 0, 48 * time.Minute},
	} {
		got := p.Next(tc.attempt, first, first, tc.r)
		assert.InDelta(t, float64(tc.want), float64(got.Sub(first)), float64(time.Millisecond), "attempt %d r %v", tc.attempt, tc.r)
	}

	// Without jitter: attempts until the schedule gives up.
	now, attempts := first, 0
	for {
		attempts++
		next := p.Next(attempts, first, now, 0.5)
		if next.IsZero() {
			break
		}
		now = next
	}
	assert.GreaterOrEqual(t, now.Sub(first), 72*time.Hour, "retries cover at least 3 days")
	assert.Less(t, now.Sub(first), 73*time.Hour)
	assert.Equal(t, 79, attempts, "30 s, 1, 2, 4, 8, 16, 32 min, then hourly")
}
