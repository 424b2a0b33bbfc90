package loop_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/internal/loop"
)

// TestSleep: Sleep returns nil once d elapsed (or at once for no d), and
// ctx's error when ctx ended first.
func TestSleep(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"elapsed", context.Background(), time.Millisecond, nil},
		{"no wait", ended, 0, nil},
		{"ended first", ended, time.Hour, context.Canceled},
	}
	for _, tc := range tests {
		assert.ErrorIs(t, loop.Sleep(tc.ctx, tc.d), tc.want, tc.name)
	}
}
