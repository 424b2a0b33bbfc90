package importer

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// next returns the next leased item for one of this runner's forwarders,
// claiming a new batch of up to Concurrency items in one statement when
// none is left (r.claimed); it reports false when nothing is due. One claim
// per item had every forwarder run the claiming query (a sort of the due
// items, skipping locked rows) on its own: `cardvault bench` measured it at
// 17 ms of PostgreSQL time per item for a 2,000-item job, the import's
// bottleneck. Claims are made one at a time per runner, and idle
// forwarders share a claim that found nothing for half a poll (each claim
// is planned as it runs); a batch's leases are renewed by the heartbeat
// like any other and given back on stop.
func (r *Runner) next(ctx context.Context) (vault.ItemWork, bool, error) {
	return r.claimed.Next(ctx, r.cfg.Poll/2, func(ctx context.Context) ([]vault.ItemWork, error) {
		items, err := r.svc.ClaimItems(ctx, r.cfg.Owner, r.cfg.Concurrency, r.cfg.LeaseTTL)
		r.held.add(items)
		return items, err
	})
}

// heldItems are the items a runner has leased and not yet recorded or
// given back: its heartbeat renews these leases only. A lease taken by a
// claim whose answer was lost (the database failed over after committing
// it) is in none, so it runs out and the item is claimed again, rather than
// renewed for as long as this process lives.
type heldItems struct {
	mu sync.Mutex
	m  map[itemKey]vault.ItemWork
}

type itemKey struct {
	job uuid.UUID
	pm  string
}

func (h *heldItems) add(items []vault.ItemWork) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[itemKey]vault.ItemWork{}
	}
	for _, w := range items {
		h.m[itemKey{w.JobID, w.PaymentMethod}] = w
	}
}

// drop forgets w once its attempt is written or its lease given back.
func (h *heldItems) drop(w vault.ItemWork) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, itemKey{w.JobID, w.PaymentMethod})
}

// list returns the items held now.
func (h *heldItems) list() []vault.ItemWork {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]vault.ItemWork, 0, len(h.m))
	for _, w := range h.m {
		out = append(out, w)
	}
	return out
}
