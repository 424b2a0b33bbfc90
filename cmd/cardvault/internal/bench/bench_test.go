package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	good := Options{Concurrency: 32, Duration: 10 * time.Second, Out: "x", ImportCards: 2000, ImportConcurrency: 16}
	require.NoError(t, good.Validate())
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"concurrency", func(o *Options) { o.Concurrency = 0 }},
		{"duration", func(o *Options) { o.Duration = time.Millisecond }},
		{"warmup", func(o *Options) { o.Warmup = -time.Second }},
		{"import-cards", func(o *Options) { o.ImportCards = 0 }},
		{"import-concurrency", func(o *Options) { o.ImportConcurrency = 1000 }},
		{"out", func(o *Options) { o.Out = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			assert.ErrorContains(t, o.Validate(), "--"+tc.name)
		})
	}
}

// TestPrintReportSpeaksOfTargets checks the table's sections: every phase
// (the import without latencies), the ratios, and the targets with their
// verdicts under a plain "targets:" heading.
func TestPrintReportSpeaksOfTargets(t *testing.T) {
	rep := &Report{
		Phases: []PhaseResult{{Name: PhaseTokenize, Unit: "requests", Requests: 10, RPS: 5, P99Ms: 12.5},
			{Name: PhaseImport, Unit: "items", Requests: 20, RPS: 2, P99Ms: 777.25}},
		Ratios:  []Ratio{{"import/tokenize", 0.4}},
		Targets: []Target{{"tokenize p99", "≤ 25 ms", "12.5 ms", true}, {"import ≥ 0.3 × tokenize", "≥ 0.3", "0.2", false}},
	}
	var out bytes.Buffer
	printReport(&out, rep)
	table := out.String()
	for _, want := range []string{"tokenize", "12.5", "import", "ratios:\n  import/tokenize", "\ntargets:\n",
		"PASS  tokenize p99", "FAIL  import ≥ 0.3 × tokenize"} {
		assert.Contains(t, table, want)
	}
	assert.NotContains(t, table, "777.25", "the import phase prints no latencies")
	assert.NotContains(t, table, "issue")
}
