package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTuneGC: serve collects at serveGCPercent unless GOGC says otherwise,
// under a soft memory limit of serveMemoryLimit unless GOMEMLIMIT says
// otherwise.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	log := slog.New(slog.DiscardHandler)
	assert.Equal(t, serveGCPercent, tuneGC(func(string) string { return "" }, log))
	assert.Equal(t, serveGCPercent, debug.SetGCPercent(100), "the collector's target was set")
	assert.Equal(t, 100, tuneGC(func(k string) string { return map[string]string{"GOGC": "100"}[k] }, log),
		"an operator's GOGC is left alone")
	assert.Equal(t, 100, debug.SetGCPercent(100))
	assert.Equal(t, int64(serveMemoryLimit), debug.SetMemoryLimit(-1), "the soft limit was set")

	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(func(k string) string { return map[string]string{"GOMEMLIMIT": "1GiB"}[k] }, log)
	assert.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "an operator's GOMEMLIMIT is left alone")
}
