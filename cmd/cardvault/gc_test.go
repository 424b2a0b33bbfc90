package main

import (
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTuneGC: serve collects at serveGCPercent unless GOGC says otherwise.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	log := slog.New(slog.DiscardHandler)
	assert.Equal(t, serveGCPercent, tuneGC(func(string) string { return "" }, log))
	assert.Equal(t, serveGCPercent, debug.SetGCPercent(100), "the collector's target was set")
	assert.Equal(t, 100, tuneGC(func(k string) string { return map[string]string{"GOGC": "100"}[k] }, log),
		"an operator's GOGC is left alone")
	assert.Equal(t, 100, debug.SetGCPercent(100))
}
