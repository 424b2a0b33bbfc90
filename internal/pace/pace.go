// Package pace spaces one job's requests, from every process working on
// it, at the job's rate: each process reserves blocks of the job's request
// slots in the job's database row and sends each request no earlier than
// its slot. The row lock orders the reservations, so no two processes hold
// one slot and the job never runs faster than its rate, however many
// replicas work on it; a slot reserved and not used (a process stopped,
// the job ran out of work) is lost, which only slows the job.
package pace

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/cardvault/cardvault/internal/loop"
)

// Ahead is how much of a job's requests a process reserves at once: a
// block of slots covering this long at the job's rate (at least one slot).
// Longer blocks cost fewer reservations, but a slot reserved and not used
// is lost to the job.
const Ahead = 250 * time.Millisecond

// Reserve reserves the job's next n request slots (n ≥ 1) for this process
// and returns how long from now the first starts; the job's row holds
// where the reservations of every process have reached. Its error ends
// the wait that needed a slot.
type Reserve func(ctx context.Context, n int) (time.Duration, error)

// Pacer spaces one job's requests from this process on the slots it
// reserved. It is safe for concurrent use.
type Pacer struct {
	reserve Reserve
	every   time.Duration // one slot at the job's rate
	block   int           // slots reserved at once

	mu   sync.Mutex
	next time.Time // when the next reserved slot starts
	left int       // reserved slots not yet taken
}

// New returns the Pacer of a job whose rate (above 0) is requests a
// second and whose slots reserve reserves.
func New(reserve Reserve, rate float64) *Pacer {
	return &Pacer{reserve: reserve, every: time.Duration(float64(time.Second) / rate),
		block: max(1, int(math.Floor(rate*Ahead.Seconds())))}
}

// Wait takes this process's next slot of the job, reserving a block when
// none is left, and returns once the slot has started; a nil Pacer (a job
// not paced) returns at once. It returns the reservation's error, or
// ctx's when ctx ends before the slot starts.
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	at, err := p.take(ctx)
	if err != nil {
		return err
	}
	return loop.Sleep(ctx, time.Until(at))
}

// take returns when this process's next slot starts.
func (p *Pacer) take(ctx context.Context) (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left == 0 {
		first, err := p.reserve(ctx, p.block)
		if err != nil {
			return time.Time{}, err
		}
		p.next, p.left = time.Now().Add(first), p.block
	}
	at := p.next
	p.next, p.left = p.next.Add(p.every), p.left-1
	return at, nil
}
