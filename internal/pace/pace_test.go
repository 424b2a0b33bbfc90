package pace

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reservations is a Reserve that records the blocks asked for and answers
// each with wait.
type reservations struct {
	asked []int
	wait  time.Duration
	err   error
}

func (r *reservations) reserve(_ context.Context, n int) (time.Duration, error) {
	r.asked = append(r.asked, n)
	return r.wait, r.err
}

func TestABlockCoversAQuarterSecondAtTheRate(t *testing.T) {
	tests := []struct {
		rate float64
		want int
	}{
		{1000, 250},
		{20, 5},
		{6, 1},   // 1.5 slots: whole slots only
		{0.5, 1}, // less than one: still one
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, New(nil, tt.rate).block, "rate %g", tt.rate)
	}
}

func TestSlotsFollowEachOtherAtTheRateAndAreReservedByTheBlock(t *testing.T) {
	r := &reservations{wait: time.Hour}
	p := New(r.reserve, 20) // a slot every 50 ms, blocks of 5
	var at []time.Time
	for range 7 {
		a, err := p.take(context.Background())
		require.NoError(t, err)
		at = append(at, a)
	}
	assert.Equal(t, []int{5, 5}, r.asked, "a second block once the first is taken")
	assert.WithinDuration(t, time.Now().Add(time.Hour), at[0], time.Minute, "the first slot starts when the reservation says")
	for i := 1; i < 5; i++ {
		assert.Equal(t, 50*time.Millisecond, at[i].Sub(at[i-1]), "slot %d", i)
	}
}

func TestWaitReturnsTheReservationsErrorAndTheContexts(t *testing.T) {
	ended := errors.New("job ended")
	assert.ErrorIs(t, New((&reservations{err: ended}).reserve, 20).Wait(context.Background()), ended)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, New((&reservations{wait: time.Hour}).reserve, 20).Wait(ctx), context.Canceled,
		"a slot an hour away is not waited for once the context has ended")

	assert.NoError(t, New((&reservations{}).reserve, 20).Wait(context.Background()), "a slot that has started")
	assert.NoError(t, (*Pacer)(nil).Wait(ctx), "a job not paced")
}
