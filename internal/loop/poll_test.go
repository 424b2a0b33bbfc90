package loop

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestPollRunsAgainWhenWokenOrNudged: an idle step waits for neither an
// hour's tick nor anything else, but runs again on a Wake and on a nudge.
func TestPollRunsAgainWhenWokenOrNudged(t *testing.T) {
	var w Waker
	nudge := make(chan struct{}, 1)
	runs := make(chan int64, 10)
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Poll(ctx, time.Hour, &w, func(context.Context) bool { runs <- n.Add(1); return false }, nudge)
	}()
	assert.Equal(t, int64(1), <-runs, "the first step runs at once")
	w.Wake()
	assert.Equal(t, int64(2), <-runs, "a Wake runs it again")
	nudge <- struct{}{}
	assert.Equal(t, int64(3), <-runs, "so does a nudge")
	cancel()
	<-done
}

// TestPollRepeatsABusyStep: a step that found work runs again without
// waiting.
func TestPollRepeatsABusyStep(t *testing.T) {
	var w Waker
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n int
	Poll(ctx, time.Hour, &w, func(context.Context) bool {
		n++
		if n == 5 {
			cancel()
		}
		return true
	}, nil)
	assert.Equal(t, 5, n)
}

// TestWakeWithoutWaiters: Wake on the zero value, with no step waiting,
// neither blocks nor panics.
func TestWakeWithoutWaiters(t *testing.T) {
	var w Waker
	w.Wake()
	w.Wake()
	select {
	case <-w.woken():
		t.Fatal("a fresh channel is open until the next Wake")
	default:
	}
}
