package loop_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/internal/loop"
)

// TestEveryTicksLogsFailuresAndStops runs two loops until each has ticked a
// few times, then stops the group: both have returned when stop returns, a
// failing tick was logged with its loop's name and retried.
func TestEveryTicksLogsFailuresAndStops(t *testing.T) {
	var logs strings.Builder
	out := &syncWriter{w: &logs}
	log := slog.New(slog.NewTextHandler(out, nil))
	var ok, failing atomic.Int32
	enough := make(chan struct{}, 2)
	count := func(n *atomic.Int32, err error) func(context.Context) error {
		return func(context.Context) error {
			if n.Add(1) == 3 {
				enough <- struct{}{}
			}
			return err
		}
	}
	stop := loop.Start(
		loop.Every(log, "fine", time.Millisecond, count(&ok, nil)),
		loop.Every(log, "broken", time.Millisecond, count(&failing, errors.New("boom"))),
	)
	<-enough
	<-enough
	stop()
	afterStop := ok.Load() + failing.Load()
	assert.GreaterOrEqual(t, failing.Load(), int32(3), "a failing tick is retried")
	out.mu.Lock()
	text := logs.String()
	out.mu.Unlock()
	require.Contains(t, text, "loop=broken")
	assert.NotContains(t, text, "loop=fine")
	assert.Equal(t, afterStop, ok.Load()+failing.Load(), "no tick after stop returned")
}

// syncWriter serialises writes of concurrent loops to one builder.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
