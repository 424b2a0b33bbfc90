package exporter

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
)

// reserveAhead is how much of a job's sends a process reserves at once: a
// block of slots covering this long at the job's rate (at least one slot).
// Longer blocks cost fewer reservations, but a slot a process reserved and
// did not use (it stopped, or the job ran out of cards) is lost to the job.
const reserveAhead = 250 * time.Millisecond

// pacer spaces a job's sends from this process on the slots it reserved
// in the job's row (vault.ExportQueue.ReserveExportSends), so that the
// job's rate holds across every process sending its cards.
type pacer struct {
	svc   vault.ExportQueue
	job   uuid.UUID
	every time.Duration // one slot at the job's rate
	block int           // slots reserved at once

	mu   sync.Mutex
	next time.Time // when the next reserved slot starts
	left int       // reserved slots not yet taken
}

// newPacer returns the pacer of job at rate sends a second
// (vault.DefaultExportRate when not above 0).
func newPacer(svc vault.ExportQueue, job uuid.UUID, rate float64) *pacer {
	if rate <= 0 {
		rate = vault.DefaultExportRate
	}
	return &pacer{svc: svc, job: job, every: time.Duration(float64(time.Second) / rate),
		block: max(1, int(math.Floor(rate*reserveAhead.Seconds())))}
}

// wait takes this process's next slot of the job, reserving a block when
// none is left, and returns once the slot has started. It returns
// vault.ErrExportEnded once the job has ended, the reservation's error, or
// ctx's when it ends before the slot starts.
func (p *pacer) wait(ctx context.Context) error {
	at, err := p.take(ctx)
	if err != nil {
		return err
	}
	return loop.Sleep(ctx, time.Until(at))
}

// take returns when this process's next slot starts.
func (p *pacer) take(ctx context.Context) (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left == 0 {
		first, err := p.svc.ReserveExportSends(ctx, p.job, p.block)
		if err != nil {
			return time.Time{}, err
		}
		p.next, p.left = time.Now().Add(first), p.block
	}
	at := p.next
	p.next, p.left = p.next.Add(p.every), p.left-1
	return at, nil
}
