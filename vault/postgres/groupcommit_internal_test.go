package postgres

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGroupCommitWritesAtMostLimitBatchesAtOnce: with limit 2, two
// requests write their batches at once; a third waits until one is done,
// is handed everything that arrived meanwhile and writes it; every item is
// written exactly once and each request gets its own batch's error.
func TestGroupCommitWritesAtMostLimitBatchesAtOnce(t *testing.T) {
	g := &groupCommit[int]{limit: 2}
	gate := make(chan struct{})
	var inFlight, most atomic.Int32
	var mu sync.Mutex
	written := map[int]int{}
	write := func(items []int) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-gate
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			written[it]++
		}
		if items[0] == 3 {
			return errors.New("batch of 3 failed")
		}
		return nil
	}
	errs := make([]chan error, 5)
	start := func(i int) {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- g.do(i, write) }()
	}
	start(1)
	start(2)
	require.Eventually(t, func() bool { return inFlight.Load() == 2 }, 5*time.Second, time.Millisecond)
	start(3)
	start(4)
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.pending) == 2
	}, 5*time.Second, time.Millisecond, "3 and 4 wait: two batches are being written")
	close(gate)
	for i := 1; i <= 4; i++ {
		err := <-errs[i]
		if i >= 3 {
			assert.EqualError(t, err, "batch of 3 failed", "request %d shares the batch of 3", i)
		} else {
			assert.NoError(t, err, "request %d", i)
		}
	}
	assert.Equal(t, map[int]int{1: 1, 2: 1, 3: 1, 4: 1}, written)
	assert.Equal(t, int32(2), most.Load())
	assert.Zero(t, g.flushing)
}

// TestGroupCommitUnderLoad: many requests through a limit-3 group commit
// are each written once, in batches of at most the requests in flight.
func TestGroupCommitUnderLoad(t *testing.T) {
	for _, limit := range []int{0, 1, 3} {
		g := &groupCommit[int]{limit: limit}
		var mu sync.Mutex
		written := map[int]int{}
		var wg sync.WaitGroup
		for i := range 500 {
			wg.Go(func() {
				assert.NoError(t, g.do(i, func(items []int) error {
					mu.Lock()
					defer mu.Unlock()
					for _, it := range items {
						written[it]++
					}
					return nil
				}))
			})
		}
		wg.Wait()
		assert.Len(t, written, 500, "limit %d", limit)
		for i, n := range written {
			assert.Equal(t, 1, n, "item %d, limit %d", i, limit)
		}
		assert.Zero(t, g.flushing)
	}
}
