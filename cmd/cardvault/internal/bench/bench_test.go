package bench

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	good := Options{Concurrency: 32, Duration: 10 * time.Second, Out: "x", ImportCards: 2000, ImportConcurrency: 16, Replicas: 1}
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
		{"file-import-cards", func(o *Options) { o.FileImportCards = -1 }},
		{"out", func(o *Options) { o.Out = "" }},
		{"replicas", func(o *Options) { o.Replicas = 0 }},
		{"preload", func(o *Options) { o.Preload = -1 }},
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
	p50, p99, ceiling := 1.25, 6.5, 0.25
	rep := &Report{
		Phases: []PhaseResult{{Name: PhaseTokenize, Unit: "requests", Requests: 10, RPS: 5, P99Ms: 12.5},
			{Name: PhaseForward, Unit: "requests", Requests: 8, RPS: 4, P99Ms: 9, OverheadP50Ms: &p50, OverheadP99Ms: &p99},
			{Name: PhaseImport, Unit: "items", Requests: 20, RPS: 2, P99Ms: 777.25}},
		Ratios: []Ratio{{"import/tokenize", 0.4}},
		Targets: []Target{{Name: "tokenize p99", Want: "≤ 25 ms", Got: "12.5 ms", Pass: true},
			{Name: "import ≥ 0.3 × tokenize", Want: "≥ 0.3", Got: "0.2", CPUCeiling: &ceiling},
			{Name: "read ≥ 0.5 × baseline-http", Want: "≥ 0.5", Got: "-", Skipped: true}},
		AuditWrites:  AuditWrites{Rows: 30, Inserted: 30},
		TokenUpdates: TokenUpdates{Updated: 12, HOT: 9},
	}
	var out bytes.Buffer
	printReport(&out, rep)
	table := out.String()
	for _, want := range []string{"tokenize", "12.5", "import", "ratios:\n  import/tokenize", "\ntargets:\n",
		"PASS  tokenize p99                                 got 12.5 ms    want ≤ 25 ms\n",
		"FAIL  import ≥ 0.3 × tokenize                      got 0.2        want ≥ 0.3     CPU ceiling 0.25\n",
		"SKIP  read ≥ 0.5 × baseline-http", "(CPU ceiling, beside a target on two phases' rates: ",
		"(audit: 30 rows, 30 inserted and 0 updated according to pg_stat_user_tables)",
		"(tokens: 12 row versions rewritten, 9 of them HOT, within their page and with no index entry)",
		"forward: the vault's own overhead, latency minus the answer's destination_duration: p50 1.25 ms, p99 6.5 ms"} {
		assert.Contains(t, table, want)
	}
	assert.NotContains(t, table, "777.25", "the import phase prints no latencies")
	assert.NotContains(t, table, "issue")
}

func TestDestinationDurationNeedsADestinationThatAnswered200(t *testing.T) {
	tests := []struct {
		name, body string
		want       time.Duration
		err        string
	}{
		{"answered", `{"status":"succeeded","request_context":{"destination_duration":3,"destination_ip_address":"127.0.0.1"},"response_details":{"status":200}}`, 3 * time.Millisecond, ""},
		{"answered at once", `{"status":"succeeded","request_context":{"destination_duration":0},"response_details":{"status":200}}`, 0, ""},
		{"another status", `{"status":"succeeded","request_context":{"destination_duration":1},"response_details":{"status":402}}`, 0, "answered 402"},
		{"no answer", `{"status":"failed","request_context":{"destination_duration":30000},"response_details":null}`, 0, `"failed"`},
		{"still pending", `{"status":"pending","request_context":null,"response_details":null}`, 0, `"pending"`},
		{"not a record", `[]`, 0, "not a forwarding.request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := destinationDuration([]byte(tc.body))
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestSelectPhases: --phases runs the named phases and the phases they
// draw from, and refuses a name it does not know.
func TestSelectPhases(t *testing.T) {
	tests := []struct {
		names []string
		want  []string
	}{
		{nil, AllPhases},
		{[]string{"read"}, []string{PhaseTokenize, PhaseRead}},
		{[]string{"baseline-select", "baseline-http"}, []string{PhaseTokenize, PhaseBaselineSelect, PhaseBaselineHTTP}},
		{[]string{" import"}, []string{PhaseImport}},
	}
	for _, tt := range tests {
		got, err := selectPhases(tt.names)
		if err != nil {
			t.Fatalf("selectPhases(%q): %v", tt.names, err)
		}
		var ran []string
		for _, p := range AllPhases {
			if got[p] {
				ran = append(ran, p)
			}
		}
		if !slices.Equal(ran, tt.want) {
			t.Errorf("selectPhases(%q) runs %q, want %q", tt.names, ran, tt.want)
		}
	}
	if _, err := selectPhases([]string{"reed"}); err == nil || !strings.Contains(err.Error(), `"reed"`) {
		t.Errorf("selectPhases(reed) = %v, want an error naming it", err)
	}
}

// TestReadCeiling: the ceiling adds every process's CPU per baseline-http
// request to PostgreSQL's per read in baseline-audit and divides the
// machine's CPUs by it; without either phase there is none.
func TestReadCeiling(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	httpPhase := PhaseResult{Name: PhaseBaselineHTTP, Unit: "requests", RPS: 20_000,
		VaultCPUPer1k: f(0.04), PostgresCPUPer1k: f(0), BenchCPUPer1k: f(0.04)}
	audit := PhaseResult{Name: PhaseBaselineAudit, Unit: "reads", PostgresCPUPer1k: f(0.12), BenchCPUPer1k: f(0.01)}
	rep := &Report{Machine: Machine{CPUs: 2}, Phases: []PhaseResult{httpPhase, audit}}
	c := rep.readCeiling()
	require.NotNil(t, c)
	assert.Equal(t, 0.08, c.HTTPCPUMs)
	assert.Equal(t, 0.12, c.AuditCPUMs)
	assert.Equal(t, 10_000.0, c.ReadsPerSecond) // 2 CPUs × 1000 ms / 0.2 ms
	assert.Equal(t, 0.5, c.OfBaselineHTTP)

	rep.Phases = []PhaseResult{httpPhase}
	assert.Nil(t, rep.readCeiling(), "no baseline-audit, no ceiling")
	rep.Phases = []PhaseResult{{Name: PhaseBaselineHTTP, RPS: 1}, audit}
	assert.Nil(t, rep.readCeiling(), "baseline-http's CPU unmeasured, no ceiling")
}

// TestCPUCeiling: a phase's ceiling is the machine's CPUs over the CPU
// one of its requests took in every process, as a multiple of its
// reference's rate; without the phase's CPU or the reference's rate there
// is none.
func TestCPUCeiling(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	measured := PhaseResult{Name: PhaseFileImport, RPS: 9_000, VaultCPUPer1k: f(0.05), PostgresCPUPer1k: f(0.1), BenchCPUPer1k: f(0.01)}
	tokenize := PhaseResult{Name: PhaseTokenize, RPS: 5_000}
	tests := []struct {
		name   string
		phases []PhaseResult
		want   *float64
	}{
		{"measured", []PhaseResult{measured, tokenize}, f(2.5)}, // 2 CPUs × 1000 ms / 0.16 ms = 12,500/s
		{"no reference", []PhaseResult{measured}, nil},
		{"no CPU", []PhaseResult{{Name: PhaseFileImport, RPS: 9_000, VaultCPUPer1k: f(0.05)}, tokenize}, nil},
		{"less than a clock tick", []PhaseResult{{Name: PhaseFileImport, RPS: 9_000, VaultCPUPer1k: f(0), PostgresCPUPer1k: f(0),
			BenchCPUPer1k: f(0)}, tokenize}, nil},
	}
	for _, tc := range tests {
		rep := &Report{Machine: Machine{CPUs: 2}, Phases: tc.phases}
		assert.Equal(t, tc.want, rep.cpuCeiling(PhaseFileImport, PhaseTokenize), tc.name)
	}
}

// TestATargetOnAPhaseWithErrorsFails: a phase whose requests fail at once
// runs at any speed; a ratio on it must not pass, and one on a phase that
// did not run is skipped.
func TestATargetOnAPhaseWithErrorsFails(t *testing.T) {
	rep := &Report{Phases: []PhaseResult{{Name: PhaseTokenize, RPS: 100}, {Name: PhaseUpdate, RPS: 7e6, Errors: 4e7}}}
	for _, tt := range []struct {
		phase       string
		pass, skips bool
		got         string
	}{
		{PhaseUpdate, false, false, "70000 (errors)"},
		{PhaseTokenize, true, false, "70000"},
		{PhaseReplay, false, true, "-"},
	} {
		got := rep.onPhases(Target{Name: "x", Got: "70000", Pass: true}, tt.phase)
		assert.Equal(t, Target{Name: "x", Got: tt.got, Pass: tt.pass, Skipped: tt.skips}, got, tt.phase)
	}
}

// TestEveryPhaseHasWhatItDrawsFrom: whichever phases --phases picks, a
// phase drawing from tokenize's tokens finds them (reveals once drew from a
// pool only the read phase filled, and failed every request when run
// without it).
func TestEveryPhaseHasWhatItDrawsFrom(t *testing.T) {
	pre := []uuid.UUID{uuid.New()}
	for _, tt := range []struct {
		phase string
		pool  func(b *benchRun) int
	}{
		{PhaseReplay, func(b *benchRun) int { return len(b.allNos) }},
		{PhaseUpdate, func(b *benchRun) int { return len(b.allNos) }},
		{PhaseBaselineSelect, func(b *benchRun) int { return len(b.allRows) }},
		{PhaseBaselineAudit, func(b *benchRun) int { return len(b.allRows) }},
		{PhaseRead, func(b *benchRun) int { return len(b.allToks) }},
		{PhaseDetokenize, func(b *benchRun) int { return len(b.allToks) }},
		{PhaseForward, func(b *benchRun) int { return len(b.allToks) }},
	} {
		b := &benchRun{tokenNos: [][]int{{1, 2}}, tokenIDs: [][]string{{uuid.NewString(), uuid.NewString()}}}
		b.drawFrom(tt.phase, pre)
		assert.NotZero(t, tt.pool(b), tt.phase)
	}
}

func TestPerRequestServerIO(t *testing.T) {
	r0 := ioReading{walBytes: 1 << 20, fpi: 10, blocksRead: 100, backendWrites: 1}
	r1 := ioReading{walBytes: 1<<20 + 4*1024*1000, fpi: 910, blocksRead: 270, backendWrites: 1}
	failed := errors.New("no reading")
	tests := []struct {
		name       string
		err0, err1 error
		n          int64
		want       *ServerIO
	}{
		{"per request", nil, nil, 1000, &ServerIO{WALKB: 4, FPI: 0.9, BlocksRead: 0.17, BackendWrites: 0}},
		{"no requests", nil, nil, 0, nil},
		{"first reading failed", failed, nil, 1000, nil},
		{"last reading failed", nil, failed, 1000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := perRequest(r0, r1, tt.err0, tt.err1, tt.n)
			assert.Equal(t, tt.want, got)
			assert.Len(t, got.columns(), 4, "bench.csv has its four columns whether or not they were measured")
		})
	}
}
