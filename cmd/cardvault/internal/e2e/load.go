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

// LoadOptions say how to drive a load.
type LoadOptions struct {
	// Name labels the progress line.
	Name string
	// Workers is how many requests are in flight at once.
	Workers int
	// Warmup is how long requests run before they are timed: requests
	// started during it (connections opened, statements prepared, caches
	// filled) are not in the latencies, but their errors count.
	Warmup time.Duration
	// Duration is how long requests are timed after Warmup; 0 runs until
	// Stop or the context's end. Requests in flight at the deadline complete
	// and count.
	Duration time.Duration
	// Progress receives "\r<name> <requests> requests <rps> rps <errors>
	// errors" every 250 ms; nil draws nothing.
	Progress io.Writer
}

// Result is what a load measured.
type Result struct {
	Requests  int64 // counted: started after the warm-up
	All       int64 // every request, the warm-up's too (for CPU per request)
	Errors    int64 // every failed request, the warm-up's too
	Elapsed   time.Duration
	Latencies []time.Duration // every counted request's, sorted
	FirstErr  error
}

// Window is a load's progress since the previous Window.
type Window struct {
	Latencies []time.Duration // the requests counted since the previous Window, sorted
	Requests  int64           // counted so far
	Errors    int64           // failed so far
}

// Load is a running load.
type Load struct {
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	next, done   atomic.Int64
	failed       atomic.Int64
	measured     time.Time
	workers      []*worker
	stopProgress func()
	finished     chan struct{}
	once         sync.Once
	res          Result
}

// worker is one worker's tally.
type worker struct {
	mu       sync.Mutex
	lat      []time.Duration
	mark     int // where the current Window starts in lat
	errs     int64
	firstErr error
}

// RunLoad runs do for o.Warmup and then o.Duration and returns the result.
func RunLoad(ctx context.Context, o LoadOptions, do Op) Result {
	return StartLoad(ctx, o, do).Wait()
}

// StartLoad calls do from o.Workers goroutines until o's deadline, Stop, or
// ctx's end. A request cut off by Stop or ctx's end (it fails once they
// ended) does not count.
func StartLoad(ctx context.Context, o LoadOptions, do Op) *Load {
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	l := &Load{cancel: cancel, measured: start.Add(o.Warmup), finished: make(chan struct{})}
	var deadline time.Time
	if o.Duration > 0 {
		deadline = l.measured.Add(o.Duration)
	}
	l.stopProgress = func() {}
	if o.Progress != nil {
		l.stopProgress = startProgress(o.Progress, o.Name, start, &l.done, &l.failed)
	}
	for w := range o.Workers {
		wk := &worker{lat: make([]time.Duration, 0, 4096)}
		l.workers = append(l.workers, wk)
		l.wg.Go(func() { l.work(ctx, w, wk, deadline, do) })
	}
	go func() { l.wg.Wait(); close(l.finished) }()
	return l
}

// work runs requests as worker w until the deadline or ctx's end.
func (l *Load) work(ctx context.Context, w int, wk *worker, deadline time.Time, do Op) {
	for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
		i := int(l.next.Add(1) - 1)
		t0 := time.Now()
		err := do(ctx, w, i)
		d := time.Since(t0)
		if err != nil && ctx.Err() != nil {
			return // cut off by the end of the load, not by the vault
		}
		wk.mu.Lock()
		if !t0.Before(l.measured) {
			wk.lat = append(wk.lat, d)
		}
		if err != nil {
			wk.errs++
			if wk.firstErr == nil {
				wk.firstErr = err
			}
		}
		wk.mu.Unlock()
		l.done.Add(1)
		if err != nil {
			l.failed.Add(1)
		}
	}
}

// Finished is closed once every worker has stopped.
func (l *Load) Finished() <-chan struct{} { return l.finished }

// Window returns the latencies counted since the previous call and the
// totals so far.
func (l *Load) Window() Window {
	var win Window
	for _, wk := range l.workers {
		wk.mu.Lock()
		win.Latencies = append(win.Latencies, wk.lat[wk.mark:]...)
		wk.mark = len(wk.lat)
		win.Requests += int64(len(wk.lat))
		win.Errors += wk.errs
		wk.mu.Unlock()
	}
	slices.Sort(win.Latencies)
	return win
}

// Stop ends the load, cutting off the requests in flight, and returns the
// result.
func (l *Load) Stop() Result {
	l.cancel()
	return l.Wait()
}

// Wait waits for every worker to stop and returns the result.
func (l *Load) Wait() Result {
	<-l.finished
	l.once.Do(func() {
		l.res.Elapsed = time.Since(l.measured)
		l.cancel()
		l.stopProgress()
		for _, wk := range l.workers {
			l.res.Latencies = append(l.res.Latencies, wk.lat...)
			l.res.Errors += wk.errs
			if l.res.FirstErr == nil {
				l.res.FirstErr = wk.firstErr
			}
		}
		l.res.Requests, l.res.All = int64(len(l.res.Latencies)), l.done.Load()
		slices.Sort(l.res.Latencies)
	})
	return l.res
}

// startProgress redraws "\r<name> <requests> requests <rps> rps" every
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
