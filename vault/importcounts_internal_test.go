package vault

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a flush that records what it was given.
type recorder struct {
	mu      sync.Mutex
	total   map[uuid.UUID]countDelta
	flushes int
	fail    error
	gate    chan struct{} // when set, the first flush closes entered and waits on it
	entered chan struct{}
}

func (r *recorder) flush(_ context.Context, batch map[uuid.UUID]countDelta) error {
	r.mu.Lock()
	gate, fail := r.gate, r.fail
	r.gate = nil
	r.mu.Unlock()
	if gate != nil {
		close(r.entered)
		<-gate
	}
	if fail != nil {
		return fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
	if r.total == nil {
		r.total = map[uuid.UUID]countDelta{}
	}
	for id, d := range batch {
		r.total[id] = r.total[id].plus(d)
	}
	return nil
}

func TestImportCountsAlone(t *testing.T) {
	var c importCounts
	var r recorder
	job := uuid.New()
	for range 3 {
		require.NoError(t, c.add(context.Background(), job, countDelta{attempts: 1, successes: 1}, r.flush))
	}
	assert.Equal(t, 3, r.flushes, "a lone recorder flushes its own attempt before returning")
	assert.Equal(t, countDelta{attempts: 3, successes: 3}, r.total[job])
}

func TestImportCountsGathersWhileFlushing(t *testing.T) {
	var c importCounts
	gate := make(chan struct{})
	r := recorder{gate: gate, entered: make(chan struct{})}
	a, b := uuid.New(), uuid.New()
	leaderDone := make(chan error)
	go func() { leaderDone <- c.add(context.Background(), a, countDelta{attempts: 1, successes: 1}, r.flush) }()
	// Once the leader is inside its flush, record more: those calls return
	// at once and the leader writes them in one more flush.
	<-r.entered
	for i := range 10 {
		job := a
		if i%2 == 1 {
			job = b
		}
		require.NoError(t, c.add(context.Background(), job, countDelta{attempts: 1, failures: 1}, r.flush))
	}
	close(gate)
	require.NoError(t, <-leaderDone)
	assert.Equal(t, 2, r.flushes, "the ten calls made while flushing were written together")
	assert.Equal(t, countDelta{attempts: 6, successes: 1, failures: 5}, r.total[a])
	assert.Equal(t, countDelta{attempts: 5, failures: 5}, r.total[b])
}

func TestImportCountsKeepsDeltasAfterAFailedFlush(t *testing.T) {
	var c importCounts
	boom := errors.New("database down")
	r := recorder{fail: boom}
	job := uuid.New()
	assert.ErrorIs(t, c.add(context.Background(), job, countDelta{attempts: 1, successes: 1}, r.flush), boom)
	r.fail = nil
	require.NoError(t, c.add(context.Background(), job, countDelta{attempts: 1, failures: 1}, r.flush))
	assert.Equal(t, countDelta{attempts: 2, successes: 1, failures: 1}, r.total[job], "nothing was lost")
}
