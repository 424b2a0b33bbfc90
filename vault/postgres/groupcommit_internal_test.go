package postgres

import (
	"errors"
	"slices"
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
		if slices.Contains(items, 3) { // 3 and 4 arrive in either order
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

// TestGroupCommitOverlapsOnlyOnceEnoughWait: with limit 2 and overlapAt
// 3, requests arriving while a batch is in flight wait (pending) until
// three do; the third starts the second batch with all three.
func TestGroupCommitOverlapsOnlyOnceEnoughWait(t *testing.T) {
	g := &groupCommit[int]{limit: 2, overlapAt: 3}
	gate := make(chan struct{})
	var inFlight atomic.Int32
	var mu sync.Mutex
	var batches [][]int
	write := func(items []int) error {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		mu.Lock()
		batches = append(batches, items)
		mu.Unlock()
		<-gate
		return nil
	}
	var wg sync.WaitGroup
	start := func(i int) { wg.Go(func() { assert.NoError(t, g.do(i, write)) }) }
	pending := func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.pending)
	}
	start(1)
	require.Eventually(t, func() bool { return inFlight.Load() == 1 }, 5*time.Second, time.Millisecond)
	start(2)
	start(3)
	require.Eventually(t, func() bool { return pending() == 2 }, 5*time.Second, time.Millisecond,
		"two waiting are fewer than overlapAt: no second batch")
	start(4)
	require.Eventually(t, func() bool { return inFlight.Load() == 2 }, 5*time.Second, time.Millisecond,
		"the third waiting starts the second batch")
	assert.Zero(t, pending())
	close(gate)
	wg.Wait()
	require.Len(t, batches, 2)
	assert.Equal(t, []int{1}, batches[0])
	assert.ElementsMatch(t, []int{2, 3, 4}, batches[1])
	assert.Zero(t, g.flushing)
}

// TestGroupCommitUnderLoad: many requests through a limit-3 group commit
// are each written once, in batches of at most the requests in flight.
func TestGroupCommitUnderLoad(t *testing.T) {
	for _, limit := range []int{0, 1, 3} {
		g := &groupCommit[int]{limit: limit, overlapAt: limit}
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

// releasable is an item its batch's writer can release early.
type releasable struct {
	id      int
	release chan struct{}
}

func (r *releasable) released() <-chan struct{} { return r.release }

// TestGroupCommitReleasesAnItemEarly: an item its batch's writer releases
// returns from do at once, with no error, while the writer still works;
// the batch's error reaches only the items not released.
func TestGroupCommitReleasesAnItemEarly(t *testing.T) {
	g := &groupCommit[*releasable]{}
	gate, cReturned := make(chan struct{}), make(chan struct{})
	items := []*releasable{{1, make(chan struct{})}, {2, make(chan struct{})}, {3, make(chan struct{})}}
	write := func(batch []*releasable) error {
		if batch[0].id == 1 {
			<-gate
			return nil
		}
		close(batch[1].release)
		select {
		case <-cReturned:
		case <-time.After(10 * time.Second): // a deadlock guard, not a timing
			t.Error("the released item still waits for its batch")
		}
		return errors.New("batch failed")
	}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	run := func(i int, after func()) {
		wg.Go(func() {
			errs[i] = g.do(items[i], write)
			after()
		})
	}
	run(0, func() {})
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.flushing == 1 }, 5*time.Second, time.Millisecond)
	run(1, func() {})
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.pending) == 1 }, 5*time.Second, time.Millisecond)
	run(2, func() { close(cReturned) })
	require.Eventually(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.pending) == 2 }, 5*time.Second, time.Millisecond)
	close(gate)
	wg.Wait()
	assert.NoError(t, errs[0])
	assert.EqualError(t, errs[1], "batch failed")
	assert.NoError(t, errs[2], "released before its batch failed")
	assert.Zero(t, g.flushing)
}
