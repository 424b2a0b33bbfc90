package loop

import (
	"context"
	"sync"
	"time"
)

// Waker wakes the idle steps of a worker that polls (see Poll): a Wake
// ends the wait of every step waiting at that moment. The zero value is
// ready to use.
type Waker struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next Wake
}

// Wake makes every idle step look for work now, e.g. right after a job was
// created in this process.
func (w *Waker) Wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
	}
	w.ch = make(chan struct{})
}

// woken returns the channel the next Wake closes.
func (w *Waker) woken() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// Poll calls step until ctx ends. Whenever step reports it found nothing to
// do, Poll waits for the next tick of poll, a Wake of w, or a value on
// nudge (nil for none), whichever comes first. A Wake that comes while step
// runs is not lost: the step runs again at once.
func Poll(ctx context.Context, poll time.Duration, w *Waker, step func(context.Context) bool, nudge <-chan struct{}) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for ctx.Err() == nil {
		woken := w.woken()
		if step(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-woken:
		case <-nudge:
		}
	}
}
