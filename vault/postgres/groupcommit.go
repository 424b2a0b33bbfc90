package postgres

import (
	"sync"
	"time"

	"github.com/cardvault/cardvault/internal/metrics"
)

// batchTimeout bounds the write of one batch, which runs on behalf of
// every request waiting for it. A request waits for at most the batch
// before its own and its own, so two batches must fit in the HTTP request
// deadline (httpapi.RequestDeadline, 15 s): a commit that cannot complete
// (no standby left to confirm it, a database that stopped answering) then
// answers 503 within the deadline rather than after it.
const batchTimeout = 7 * time.Second

// groupCommit writes the items of concurrent requests together: one
// statement and one commit for every request that arrived while earlier
// batches were being written (group commit done by the vault rather than
// left to PostgreSQL's WAL writer alone). A request returns only once its
// batch has committed, so what it answers is durable. A request that finds
// fewer than limit batches in flight (and, when one is, at least overlapAt
// requests pending) writes one with everything pending;
// when a batch is done, its writer hands everything that arrived meanwhile
// to the first of those requests, which writes it as the next batch. So no
// request waits for more than the batch before its own and its own. The
// zero value writes one batch at a time.
type groupCommit[T any] struct {
	mu       sync.Mutex
	pending  []*groupWaiter[T]
	flushing int // batches being written
	// limit is how many batches may be written at once (0 means 1): more
	// than one lets a batch start while the last one waits for its commit
	// to reach the disk.
	limit int
	// overlapAt is how many requests must be waiting for a batch to start
	// while another is in flight (0 or 1: any one). Below it they wait for
	// the batch in flight, which hands them on as the next batch: one larger
	// batch costs less per request than two small ones when commits are
	// quick, and under load (slow commits) the waiting requests soon reach
	// it.
	overlapAt int
	// sizes records the size of each batch written (nothing when zero).
	sizes metrics.Sizes
}

// earlyReleaser is an item its batch's writer may let go before the batch
// is written (its request needs nothing of the batch's commit): once the
// channel is closed, do returns nil at once, and the writer no longer
// touches the item.
type earlyReleaser interface{ released() <-chan struct{} }

// releasedOf returns item's release channel, nil (never closed) when the
// item cannot be released early.
func releasedOf(item any) <-chan struct{} {
	if r, ok := item.(earlyReleaser); ok {
		return r.released()
	}
	return nil
}

// isClosed reports whether c, possibly nil, is closed.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// groupWaiter is one request's item and how it learns the outcome.
type groupWaiter[T any] struct {
	item  T
	done  chan struct{}     // closed once the item's batch was written or failed
	lead  chan struct{}     // closed when this request is to write batch
	batch []*groupWaiter[T] // the batch handed to this request, its own item first
	err   error
}

// do adds item to the next batch and returns once that batch was written
// by write (here or by another request), with write's error, or, for an
// item write released early (earlyReleaser), nil once it was released.
// write gets the batch in arrival order and may record per-item results
// in the items.
func (g *groupCommit[T]) do(item T, write func([]T) error) error {
	early := releasedOf(item)
	w := &groupWaiter[T]{item: item, done: make(chan struct{}), lead: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, w)
	var batch []*groupWaiter[T]
	if g.mayStart() {
		g.flushing++
		batch, g.pending = g.pending, nil
	}
	g.mu.Unlock()
	if batch == nil {
		// A waiter never gives up: the one that is handed a batch must write it.
		select {
		case <-early:
			return nil
		case <-w.done:
			if isClosed(early) {
				return nil
			}
			return w.err
		case <-w.lead:
			batch = w.batch
		}
	}
	g.write(batch, write)
	g.mu.Lock()
	if len(g.pending) > 0 {
		next := g.pending
		g.pending = nil
		next[0].batch = next
		close(next[0].lead)
	} else {
		g.flushing--
	}
	g.mu.Unlock()
	if isClosed(early) {
		return nil
	}
	return w.err
}

// mayStart reports whether a request that just joined the pending ones
// (g.mu held) starts a batch with them now: when none is in flight, or
// fewer than limit are and at least overlapAt requests wait.
func (g *groupCommit[T]) mayStart() bool {
	return g.flushing == 0 || g.flushing < max(g.limit, 1) && len(g.pending) >= g.overlapAt
}

// write writes batch with write and tells each of its requests the outcome.
func (g *groupCommit[T]) write(batch []*groupWaiter[T], write func([]T) error) {
	items := make([]T, len(batch))
	for i, x := range batch {
		items[i] = x.item
	}
	g.sizes.Observe(len(items))
	err := write(items)
	for _, x := range batch {
		x.err = err
		close(x.done)
	}
}
