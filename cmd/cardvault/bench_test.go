package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// benchChildEnv marks the test binary re-executed as the bench's vault.
const benchChildEnv = "CARDVAULT_BENCH_CHILD"

// TestBenchChildServe is the vault process of TestBenchRunsEveryPhase: the
// bench re-executes this test binary, which runs `cardvault serve` here
// until SIGTERM. Run directly, it skips.
func TestBenchChildServe(t *testing.T) {
	if os.Getenv(benchChildEnv) != "1" {
		t.Skip("the vault child of TestBenchRunsEveryPhase")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cmd := newRootCmd()
	cmd.SetArgs([]string{"serve"})
	require.NoError(t, cmd.ExecuteContext(ctx))
}

// TestBenchRunsEveryPhase runs a tiny bench (a fraction of a second per
// phase, 20 imported cards) with profiling on, and checks the report: seven
// phases in order, each with requests and no errors, the seven ratios, the
// nine targets, the same in bench.csv, and a CPU profile per HTTP phase.
func TestBenchRunsEveryPhase(t *testing.T) {
	out := t.TempDir()
	o := benchOptions{DatabaseURL: dbURL, Concurrency: 4, Duration: 300 * time.Millisecond, Out: out,
		ImportCards: 20, ImportConcurrency: 4, Profile: true, skipSettle: true,
		childCommand: func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBenchChildServe$", "-test.count=1")
			cmd.Env = []string{benchChildEnv + "=1", vaulttest.EnvURL + "=" + dbURL}
			return cmd, nil
		}}
	require.NoError(t, o.validate())
	var table, progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, runBench(ctx, o, &table, &progress), "table:\n%s\nprogress:\n%s", &table, &progress)

	var rep benchReport
	js, err := os.ReadFile(filepath.Join(out, "bench.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(js, &rep))
	want := []string{phaseBaselineInsert, phaseTokenize, phaseBaselineSelect, phaseBaselineHTTP, phaseRead, phaseDetokenize, phaseImport}
	var got []string
	for _, p := range rep.Phases {
		got = append(got, p.Name)
		assert.Positive(t, p.Requests, p.Name)
		assert.Zero(t, p.Errors, "%s: %s", p.Name, p.FirstError)
		assert.Positive(t, p.RPS, p.Name)
		assert.Contains(t, table.String(), p.Name)
	}
	assert.Equal(t, want, got)
	assert.Equal(t, int64(20), rep.phase(phaseImport).Requests)
	assert.NotNil(t, rep.phase(phaseTokenize).VaultCPUPer1k)
	assert.Nil(t, rep.phase(phaseBaselineInsert).VaultCPUPer1k, "the vault does not serve the baselines")
	assert.Positive(t, rep.VaultRSSPeakMB)
	assert.Len(t, rep.Ratios, 7)
	assert.Len(t, rep.Targets, 9)
	assert.Regexp(t, `^fsync=(on|off) synchronous_commit=\w+$`, rep.Machine.Durability, "the server's durability is reported")
	assert.Contains(t, table.String(), "targets (issue 6)")

	f, err := os.Open(filepath.Join(out, "bench.csv"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	assert.Len(t, rows, 1+7+7+9)

	for _, p := range []string{phaseTokenize, phaseRead, phaseDetokenize} {
		st, err := os.Stat(filepath.Join(out, p+".cpu.pprof"))
		if assert.NoError(t, err, p) {
			assert.Positive(t, st.Size(), p)
		}
	}
	assert.Contains(t, progress.String(), "requests")
}

// TestBenchCardsAndBody checks that the bench sends distinct Luhn-valid
// test cards (the numbers vaulttest.LuhnNumber makes) in the shape of
// testdata/stripe/forward_body_template.json.
func TestBenchCardsAndBody(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		n := benchCardNumber(i)
		_, err := card.ParsePAN(n)
		require.NoError(t, err, "card %d", i)
		assert.False(t, seen[n], "card %d repeats", i)
		seen[n] = true
		bin := testBINs[i%len(testBINs)]
		assert.Equal(t, vaulttest.LuhnNumber(bin.prefix, bin.length, i/len(testBINs)), n)
	}
	tmpl, err := os.ReadFile(filepath.Join(vaulttest.RepoRoot(t), "testdata", "stripe", "forward_body_template.json"))
	require.NoError(t, err)
	assert.Equal(t, jsonKeys(t, tmpl), jsonKeys(t, forwardBody("pm_1", benchCardNumber(1))))
}

// jsonKeys returns the dotted key paths of a JSON object, sorted.
func jsonKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(doc, &m))
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			keys = append(keys, prefix+k)
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", m)
	slices.Sort(keys)
	return keys
}

func TestParseDebugListen(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"127.0.0.1:6060", "127.0.0.1:6060", true},
		{"localhost:6060", "localhost:6060", true},
		{"[::1]:6060", "[::1]:6060", true},
		{"0.0.0.0:6060", "", false},
		{":6060", "", false},
		{"10.1.2.3:6060", "", false},
		{"127.0.0.1", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseDebugListen(tc.in)
			if !tc.ok {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestBenchOptionsValidate(t *testing.T) {
	good := benchOptions{Concurrency: 32, Duration: 10 * time.Second, Out: "x", ImportCards: 2000, ImportConcurrency: 16}
	require.NoError(t, good.validate())
	tests := []struct {
		name string
		mod  func(*benchOptions)
	}{
		{"concurrency", func(o *benchOptions) { o.Concurrency = 0 }},
		{"duration", func(o *benchOptions) { o.Duration = time.Millisecond }},
		{"warmup", func(o *benchOptions) { o.Warmup = -time.Second }},
		{"import-cards", func(o *benchOptions) { o.ImportCards = 0 }},
		{"import-concurrency", func(o *benchOptions) { o.ImportConcurrency = 1000 }},
		{"out", func(o *benchOptions) { o.Out = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			assert.ErrorContains(t, o.validate(), "--"+tc.name)
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"max of 100", ms(hundred...), 1, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, percentile(tc.sorted, tc.q))
		})
	}
}

// TestRunLoadLeavesTheWarmUpUntimed: requests started during the warm-up
// are not timed or counted as measured requests, but their errors count.
func TestRunLoadLeavesTheWarmUpUntimed(t *testing.T) {
	warmup := 300 * time.Millisecond
	var mu sync.Mutex
	var started []time.Time
	begin := time.Now()
	res := runLoad(context.Background(), "test", 1, warmup, 100*time.Millisecond, io.Discard, func(_ context.Context, _, i int) error {
		mu.Lock()
		started = append(started, time.Now())
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // the request's own work
		if i == 0 {
			return errors.New("refused during the warm-up")
		}
		return nil
	})
	assert.Equal(t, int64(1), res.errors, "the warm-up's error counts")
	assert.Equal(t, int64(len(started)), res.all)
	assert.Positive(t, res.requests)
	assert.Less(t, res.requests, res.all, "the warm-up's requests are not measured")
	assert.Len(t, res.latencies, int(res.requests))
	late := 0
	for _, at := range started {
		if at.Sub(begin) >= warmup {
			late++
		}
	}
	assert.LessOrEqual(t, int(res.requests), late, "only requests started after the warm-up are measured")
}
