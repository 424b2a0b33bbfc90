package e2e

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"max of 100", ms(hundred...), 1, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Percentile(tc.sorted, tc.q))
		})
	}
}

// TestRunLoadLeavesTheWarmUpUntimed: requests started during the warm-up
// are not timed or counted as measured requests, but their errors count.
func TestRunLoadLeavesTheWarmUpUntimed(t *testing.T) {
	warmup := 300 * time.Millisecond
	var mu sync.Mutex
	var started []time.Time
	begin := time.Now()
	var progress bytes.Buffer
	o := LoadOptions{Name: "warm", Workers: 1, Warmup: warmup, Duration: 100 * time.Millisecond, Progress: &progress}
	res := RunLoad(context.Background(), o, func(_ context.Context, _, i int) error {
		mu.Lock()
		started = append(started, time.Now())
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // the request's own work
		if i == 0 {
			return errors.New("refused during the warm-up")
		}
		return nil
	})
	assert.Equal(t, int64(1), res.Errors, "the warm-up's error counts")
	assert.Equal(t, int64(len(started)), res.All)
	assert.Positive(t, res.Requests)
	assert.Less(t, res.Requests, res.All, "the warm-up's requests are not measured")
	assert.Len(t, res.Latencies, int(res.Requests))
	late := 0
	for _, at := range started {
		if at.Sub(begin) >= warmup {
			late++
		}
	}
	assert.LessOrEqual(t, int(res.Requests), late, "only requests started after the warm-up are measured")
	assert.Contains(t, progress.String(), "warm ", "the progress line names the load")
}

// TestStopCutsOffRequestsWithoutCountingThem: a load without a duration
// runs until Stop; the requests Stop cuts off are neither errors nor
// requests, and each Window holds only the requests since the previous one.
func TestStopCutsOffRequestsWithoutCountingThem(t *testing.T) {
	l := StartLoad(context.Background(), LoadOptions{Workers: 3}, func(ctx context.Context, _, i int) error {
		if i < 6 {
			return nil
		}
		<-ctx.Done() // the later requests hang until cut off
		return ctx.Err()
	})
	waitUntil(t, func() bool { return l.Window().Requests == 6 })
	assert.Empty(t, l.Window().Latencies, "a second window holds nothing new")
	res := l.Stop()
	<-l.Finished()
	assert.Equal(t, int64(6), res.Requests)
	assert.Equal(t, int64(6), res.All)
	assert.Zero(t, res.Errors, "requests cut off by Stop are not errors")
	assert.NoError(t, res.FirstErr)
	assert.Len(t, res.Latencies, 6)
	assert.True(t, slices.IsSorted(res.Latencies))
}

// waitUntil polls cond until it holds, failing the test after 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out")
		time.Sleep(5 * time.Millisecond)
	}
}
