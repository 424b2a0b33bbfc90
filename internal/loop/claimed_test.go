package loop

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Concurrent steps share a claim that found nothing until Awake, take a
// batch's items one each, and get a claim's error.
func TestClaimedSharesEmptyClaimsAndHandsOutBatches(t *testing.T) {
	ctx := context.Background()
	var c Claimed[int]
	var calls atomic.Int32
	var batch []int
	var fail error
	claim := func(context.Context) ([]int, error) { calls.Add(1); return batch, fail }

	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := c.Next(ctx, time.Hour, claim)
			assert.NoError(t, err)
			assert.False(t, ok)
		}()
	}
	wg.Wait()
	require.Equal(t, int32(1), calls.Load(), "claims by 16 idle steps")

	c.Awake()
	batch = []int{1, 2}
	var got []int
	for range 2 {
		v, ok, err := c.Next(ctx, time.Hour, claim)
		require.NoError(t, err)
		require.True(t, ok)
		got = append(got, v)
	}
	require.Equal(t, []int{1, 2}, got)
	require.Equal(t, int32(2), calls.Load(), "one claim for the batch")

	fail = errors.New("database gone")
	_, ok, err := c.Next(ctx, time.Hour, claim)
	require.ErrorIs(t, err, fail)
	require.False(t, ok)
}
