package vault

import "sync"

// groupCommit writes the items of concurrent requests together: one
// statement and one commit for every request that arrived while the
// previous batch was being written (group commit done by the vault rather
// than left to PostgreSQL's WAL writer alone). A request returns only once
// its batch has committed, so what it answers is durable. The first request
// to find no batch in flight writes one; when it is done it hands the
// writing to the first request that arrived meanwhile, so no request waits
// for more than the batch before its own and its own. The zero value is
// ready to use.
type groupCommit[T any] struct {
	mu       sync.Mutex
	pending  []*groupWaiter[T]
	flushing bool
}

// groupWaiter is one request's item and how it learns the outcome.
type groupWaiter[T any] struct {
	item T
	done chan struct{} // closed once the item's batch was written or failed
	lead chan struct{} // closed when this request is to write the next batch
	err  error
}

// do adds item to the next batch and returns once that batch was written
// by write (here or by another request), with write's error. write gets the
// batch in arrival order and may record per-item results in the items.
func (g *groupCommit[T]) do(item T, write func([]T) error) error {
	w := &groupWaiter[T]{item: item, done: make(chan struct{}), lead: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, w)
	leader := !g.flushing
	g.flushing = true
	g.mu.Unlock()
	if !leader {
		// A waiter never gives up: the one that is handed the lead must take it.
		select {
		case <-w.done:
			return w.err
		case <-w.lead:
		}
	}
	g.mu.Lock()
	batch := g.pending
	g.pending = nil
	g.mu.Unlock()
	items := make([]T, len(batch))
	for i, x := range batch {
		items[i] = x.item
	}
	err := write(items)
	for _, x := range batch {
		x.err = err
		close(x.done)
	}
	g.mu.Lock()
	if len(g.pending) > 0 {
		close(g.pending[0].lead)
	} else {
		g.flushing = false
	}
	g.mu.Unlock()
	return w.err
}
