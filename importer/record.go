package importer

import (
	"context"
	"sync"
	"time"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// recordTimeout bounds the write of one attempt.
const recordTimeout = 10 * time.Second

// recorder writes forwarders' attempts in the background, so that a
// forwarder goes on to its next item while its attempt commits (with the
// attempts of the other forwarders, see vault.RecordAttempt) instead of
// adding that commit to every item's time. Until its attempt is written
// the item stays pending and leased to this runner, so no one forwards it
// again; Run waits for every attempt to be written before it gives its
// leases back. At most one attempt per forwarder is being written at a
// time beyond the forwarders' own: a forwarder waits when the database is
// slower than the forwards.
type recorder struct {
	slots   chan struct{} // one per attempt being written
	writing sync.WaitGroup
}

func newRecorder(concurrency int) *recorder {
	return &recorder{slots: make(chan struct{}, concurrency)}
}

// record writes owner's attempt at on w in the background, waiting first
// while every slot is taken.
func (r *Runner) record(ctx context.Context, w vault.ItemWork, at vault.Attempt) {
	rec := r.recorder
	rec.slots <- struct{}{}
	rec.writing.Add(1)
	go func() {
		defer func() { r.held.drop(w); <-rec.slots; rec.writing.Done() }()
		// The forward happened: while the database fails over, keep trying
		// to write it down rather than leave the item leased to a worker
		// that will never record it (it would be forwarded again once this
		// process stops and its lease runs out).
		err := loop.Retry(ctx, isUnavailable, func(ctx context.Context) error {
			recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
			defer cancel()
			return r.svc.RecordAttempt(recCtx, r.cfg.Owner, w, at)
		})
		if err != nil && !vault.IsImportEnded(err) {
			r.itemLog(w).Error("recording an import attempt", "error", err)
		}
		if err == nil {
			r.cfg.Metrics.Items(attemptOutcome(at), 1)
		}
		if err == nil && at.Status != vault.ItemPending && r.drained.Load() {
			r.settled() // perhaps the job's last item: let complete look now, not at its next poll
		}
	}()
}

// attemptOutcome is the metrics outcome of an attempt.
func attemptOutcome(at vault.Attempt) metrics.ItemOutcome {
	switch {
	case at.Status == vault.ItemSucceeded:
		return metrics.ItemSucceeded
	case at.Status == vault.ItemFailed:
		return metrics.ItemFailed
	case at.Throttled:
		return metrics.ItemThrottled
	}
	return metrics.ItemRetried
}

// isUnavailable reports a failure that passes by itself, such as the
// database failing over.
func isUnavailable(err error) bool { return vault.ErrorKind(err) == vault.KindUnavailable }

// settled tells the complete loop that an item ended while nothing was left
// to claim; signals while it runs collapse into one.
func (r *Runner) settled() {
	select {
	case r.itemsSettled <- struct{}{}:
	default:
	}
}

// awaitRecords returns once every attempt handed to record is written (or
// failed).
func (r *Runner) awaitRecords() { r.recorder.writing.Wait() }
