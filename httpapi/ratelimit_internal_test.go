package httpapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBucketsStayBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		spendAll bool // leave every bucket empty, so none can be dropped for free
	}{
		{"buckets that refill are dropped first", false},
		{"busy buckets are dropped an eighth at a time", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuckets[int](1, 2, 64)
			for i := range 10_000 {
				_, ok := b.take(i, t0)
				require.True(t, ok, "a new key starts with a full bucket")
				if tt.spendAll {
					b.take(i, t0)
				}
				require.LessOrEqual(t, b.len(), 64)
			}
			// A key still in the map keeps its state: its bucket is spent.
			last := 9_999
			if tt.spendAll {
				_, ok := b.take(last, t0)
				assert.False(t, ok, "a spent bucket stays spent while it is kept")
			}
			_, ok := b.take(last, t0.Add(2*time.Second))
			assert.True(t, ok, "a bucket refills with time")
		})
	}
}

func TestBucketWaitRoundsUp(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	b := newBuckets[string](0.4, 1, 8)
	_, ok := b.take("k", t0)
	require.True(t, ok)
	wait, ok := b.take("k", t0)
	require.False(t, ok)
	assert.Equal(t, 2500*time.Millisecond, wait.Round(time.Millisecond))
}
