package console

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestAveragesPerDestination(t *testing.T) {
	ms := time.Millisecond
	dests := []destinationRow{{ID: "fwddst_a"}, {ID: "fwddst_b"}, {ID: "fwddst_idle"}}
	tests := []struct {
		name     string
		forwards []forwardRow
		want     []latency
	}{
		{"no forward", nil, nil},
		{"one destination", []forwardRow{{DestinationID: "fwddst_a", Duration: 10 * ms}, {DestinationID: "fwddst_a", Duration: 30 * ms}},
			[]latency{{"fwddst_a", 20 * ms, 2}}},
		{"listed destinations first, then a removed one", []forwardRow{
			{DestinationID: "fwddst_gone", Duration: 5 * ms}, {DestinationID: "fwddst_b", Duration: 40 * ms},
			{DestinationID: "fwddst_a", Duration: 1 * ms}, {DestinationID: "fwddst_gone", Duration: 7 * ms}},
			[]latency{{"fwddst_a", ms, 1}, {"fwddst_b", 40 * ms, 1}, {"fwddst_gone", 6 * ms, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, averages(dests, tt.forwards))
		})
	}
}

func TestLatencyChartScalesToTheSlowestDestination(t *testing.T) {
	dests := []destinationRow{{ID: "fwddst_fast"}, {ID: "fwddst_slow"}}
	ch := latencyChart(dests, []forwardRow{{DestinationID: "fwddst_fast", Duration: 25 * time.Millisecond},
		{DestinationID: "fwddst_slow", Duration: 100 * time.Millisecond}})
	assert.False(t, ch.Empty)
	assert.Len(t, ch.Bars, 2)
	span := float64(latencyWidth - latencyLabelWidth - latencyValueWidth)
	assert.InDelta(t, span/4, ch.Bars[0].W, 0.001)
	assert.InDelta(t, span, ch.Bars[1].W, 0.001)
	assert.Equal(t, "fwddst_slow: 100.0 ms · 1 forward", ch.Bars[1].Title)
	assert.True(t, latencyChart(dests, nil).Empty, "no forward, nothing to chart")
}
