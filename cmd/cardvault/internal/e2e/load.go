package e2e

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Op performs one request of a load as worker w; i numbers the request
// across the load, from 0. It returns the request's error.
type Op func(ctx context.Context, w, i int) error

// Result is what a load measured.
type Result struct {
	Requests  int64 // counted: started after the warm-up
	All       int64 // every request, the warm-up's too (for CPU per request)
	Errors    int64 // every failed request, the warm-up's too
	Elapsed   time.Duration
	Latencies []time.Duration // every counted request's, sorted
	FirstErr  error
}

// Run calls do from concurrency workers for warmup and then d, drawing
// a progress line on progress, and returns the counts and latencies.
// Requests started during the warm-up (connections opened, statements
// prepared, caches filled) are not timed, but their errors count.
// Requests in flight at the deadline complete and count.
func Run(ctx context.Context, name string, concurrency int, warmup, d time.Duration, progress io.Writer, do Op) Result {
	var next, done, failed atomic.Int64
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	start := time.Now()
	measured := start.Add(warmup)
	deadline := measured.Add(d)
	stopProgress := startProgress(progress, name, start, &done, &failed)
	for w := range concurrency {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			var firstErr error
			var errs int64
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				t0 := time.Now()
				err := do(ctx, w, i)
				if !t0.Before(measured) {
					lat = append(lat, time.Since(t0))
				}
				done.Add(1)
				if err != nil {
					errs++
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			res.Errors += errs
			if res.FirstErr == nil {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(measured)
	stopProgress()
	res.Requests, res.All = int64(len(res.Latencies)), done.Load()
	slices.Sort(res.Latencies)
	return res
}

// startProgress redraws "\r<phase> <requests> requests <rps> rps" every
// 250 ms until the returned stop is called, which draws the final line.
func startProgress(w io.Writer, name string, start time.Time, done, failed *atomic.Int64) (stop func()) {
	draw := func() {
		n := done.Load()
		secs := time.Since(start).Seconds()
		fmt.Fprintf(w, "\r%-16s %9d requests %9.0f rps %6d errors", name, n, float64(n)/secs, failed.Load())
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				draw()
				fmt.Fprintln(w)
				return
			case <-t.C:
				draw()
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// Percentile returns the q-quantile (0 < q ≤ 1) of sorted latencies by
// nearest rank, or 0 when there are none.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
