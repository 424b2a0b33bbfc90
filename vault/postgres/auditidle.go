package postgres

import (
	"sync"

	"github.com/google/uuid"
)

// Read batches write their audit rows in the statement that finds their
// tokens (token_read_chained.go), chained after lane heads held
// in memory: the head a read batch advanced a lane to is kept here, idle,
// for the next read batch, which chains its rows after it and advances the
// lane only where it still stands there. Read batches lock their lanes from
// the upper half of the chain, each process in its own turn (readerLanes),
// and every other writer from the bottom (writerLanes), so an idle head is
// seldom moved by another transaction; when it is, the batch costs a redo
// the ordinary way, never a broken chain.

// maxIdleHeads is how many idle heads a chain keeps: one for each read
// batch in flight.
const maxIdleHeads = readBatchesInFlight

// idleHeads are the lane heads read batches left, by chain.
type idleHeads struct {
	mu    sync.Mutex
	heads map[uuid.UUID][]laneHead
}

// take removes and returns an idle head of each of chains, or false,
// taking none, when a chain has none.
func (h *idleHeads) take(chains []uuid.UUID) (map[uuid.UUID]*laneHead, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[uuid.UUID]*laneHead, len(chains))
	for _, c := range chains {
		if len(h.heads[c]) == 0 {
			return nil, false
		}
	}
	for _, c := range chains {
		idle := h.heads[c]
		last := idle[len(idle)-1]
		out[c], h.heads[c] = &last, idle[:len(idle)-1]
	}
	return out, true
}

// put keeps heads idle, each replacing an older head of its lane, at most
// maxIdleHeads a chain (the oldest dropped).
func (h *idleHeads) put(heads map[uuid.UUID]*laneHead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.heads == nil {
		h.heads = map[uuid.UUID][]laneHead{}
	}
	for c, head := range heads {
		idle := append(withoutLane(h.heads[c], head.lane), *head)
		h.heads[c] = idle[max(0, len(idle)-maxIdleHeads):]
	}
}

// drop forgets the idle heads of the lanes in heads: a transaction holds
// them now and will move them.
func (h *idleHeads) drop(heads map[uuid.UUID]*laneHead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c, head := range heads {
		if idle := h.heads[c]; len(idle) > 0 {
			h.heads[c] = withoutLane(idle, head.lane)
		}
	}
}

// clear forgets every idle head.
func (h *idleHeads) clear() {
	h.mu.Lock()
	h.heads = nil
	h.mu.Unlock()
}

// withoutLane returns heads without the one of lane, reusing its array.
func withoutLane(heads []laneHead, lane int16) []laneHead {
	out := heads[:0]
	for _, h := range heads {
		if h.lane != lane {
			out = append(out, h)
		}
	}
	return out
}
