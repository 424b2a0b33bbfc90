package loop

import (
	"context"
	"sync"
	"time"
)

// Claimed hands out, one at a time, the items a worker's concurrent steps
// claim in batches (one claim statement for many items). When a claim finds
// nothing, the steps that ask within idle of it take that as their answer
// too, so an idle worker claims once per poll rather than once per step;
// Awake ends that at once (a job was just created). The zero value is
// ready to use.
type Claimed[T any] struct {
	mu        sync.Mutex
	items     []T
	idleUntil time.Time
}

// Next returns the next claimed item, calling claim for a new batch when
// none is left and no recent claim found nothing. It reports false when
// nothing is due, and returns claim's error.
func (c *Claimed[T]) Next(ctx context.Context, idle time.Duration, claim func(context.Context) ([]T, error)) (T, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero T
	if len(c.items) == 0 {
		if time.Now().Before(c.idleUntil) {
			return zero, false, nil
		}
		items, err := claim(ctx)
		if err != nil {
			return zero, false, err
		}
		c.items = items
		if len(items) == 0 {
			c.idleUntil = time.Now().Add(idle)
			return zero, false, nil
		}
	}
	w := c.items[0]
	c.items = c.items[1:]
	return w, true, nil
}

// Awake makes the next Next claim, however recently a claim found nothing.
func (c *Claimed[T]) Awake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idleUntil = time.Time{}
}
