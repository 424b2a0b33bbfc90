package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/bench"
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
// phase, 20 imported cards, a 30-row card file, 50 preloaded tokens, two
// vault processes) with profiling on, and
// checks the report: every phase in order, each with requests and no errors, the forward phase's
// vault overhead, the fourteen ratios, the sixteen targets, the same in
// bench.csv, and a CPU profile per HTTP phase.
func TestBenchRunsEveryPhase(t *testing.T) {
	out := t.TempDir()
	var table, progress bytes.Buffer
	o := bench.Options{DatabaseURL: dbURL, Concurrency: 4, Duration: 300 * time.Millisecond, Out: out,
		ImportCards: 20, ImportConcurrency: 4, Profile: true, Preload: 50, Seed: seedBench, Replicas: 2, SkipSettle: true, Report: &table, Progress: &progress,
		Provision: provisionBench, StopGrace: shutdownGrace,
		FileImportCards: 30, ImportKey: benchImportKey,
		ChildCommand: func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBenchChildServe$", "-test.count=1")
			cmd.Env = []string{benchChildEnv + "=1", vaulttest.EnvURL + "=" + dbURL}
			return cmd, nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, bench.Run(ctx, o), "table:\n%s\nprogress:\n%s", &table, &progress)

	var rep bench.Report
	js, err := os.ReadFile(filepath.Join(out, "bench.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(js, &rep))
	want := bench.AllPhases
	var got []string
	for _, p := range rep.Phases {
		got = append(got, p.Name)
		assert.Positive(t, p.Requests, p.Name)
		assert.Zero(t, p.Errors, "%s: %s", p.Name, p.FirstError)
		assert.Positive(t, p.RPS, p.Name)
		assert.Contains(t, table.String(), p.Name)
		assert.NotNil(t, p.BenchCPUPer1k, "%s: the bench's own CPU", p.Name)
		assert.NotNil(t, p.PostgresIO, "%s: PostgreSQL's WAL and reads", p.Name)
	}
	assert.Equal(t, want, got)
	require.NotNil(t, rep.Ceiling, "baseline-http and baseline-audit give a read ceiling")
	assert.Positive(t, rep.Ceiling.AuditCPUMs)
	assert.Positive(t, rep.Ceiling.ReadsPerSecond)
	assert.Contains(t, table.String(), "(read ceiling: ")
	assert.Nil(t, rep.Phase(bench.PhaseReadFloor).VaultCPUPer1k, "the bench serves the read floor itself")
	assert.Contains(t, table.String(), "(read floor: a bare HTTP server")
	assert.Equal(t, int64(20), rep.Phase(bench.PhaseImport).Requests)
	assert.Equal(t, int64(30), rep.Phase(bench.PhaseFileImport).Requests, "every row of the card file")
	assert.NotNil(t, rep.Phase(bench.PhaseTokenize).VaultCPUPer1k)
	assert.Nil(t, rep.Phase(bench.PhaseBaselineInsert).VaultCPUPer1k, "the vault does not serve the baselines")
	assert.Positive(t, rep.VaultRSSPeakMB)
	fwd := rep.Phase(bench.PhaseForward)
	require.NotNil(t, fwd.OverheadP50Ms, "the forward phase reports the vault's overhead")
	require.NotNil(t, fwd.OverheadP99Ms)
	assert.Positive(t, *fwd.OverheadP50Ms)
	assert.GreaterOrEqual(t, *fwd.OverheadP99Ms, *fwd.OverheadP50Ms)
	assert.LessOrEqual(t, *fwd.OverheadP99Ms, fwd.MaxMs, "the overhead is part of the latency")
	assert.Nil(t, rep.Phase(bench.PhaseDetokenize).OverheadP50Ms, "only forwards have a destination")
	assert.Contains(t, table.String(), "forward: the vault's own overhead")
	assert.Equal(t, 2, rep.Config.Replicas)
	for _, log := range []string{"vault.log", "vault-2.log"} {
		body, err := os.ReadFile(filepath.Join(out, log))
		require.NoError(t, err)
		assert.Contains(t, string(body), "/cde-import", "%s: both vaults served requests", log)
	}
	require.NotNil(t, rep.Preload, "the preload is reported")
	assert.Equal(t, 50, rep.Preload.Tokens)
	assert.Equal(t, 250, rep.Preload.AuditRows)
	assert.Positive(t, rep.Preload.TokenBytes)
	assert.Contains(t, table.String(), "preloaded 50 tokens and 250 audit rows")
	assert.Positive(t, rep.Preload.PrewarmMB, "the token table's indexes are read into shared buffers")
	for _, table := range []string{"bench_tokens", "tokens"} {
		assert.Contains(t, progress.String(), "of the indexes of "+table+" into shared buffers")
	}
	assert.Positive(t, rep.Phase(bench.PhaseTokenize).PostgresIO.WALKB, "a new token is written to the WAL")
	assert.Contains(t, table.String(), "PostgreSQL per request (WAL kB")
	assert.Len(t, rep.Ratios, 14)
	assert.Len(t, rep.Targets, 16)
	assert.Positive(t, rep.AuditWrites.Inserted, "the audit table's inserts are counted")
	assert.Zero(t, rep.AuditWrites.Updated, "no audit row was updated")
	audit := rep.Targets[len(rep.Targets)-1]
	assert.Equal(t, "audit rows never updated", audit.Name)
	assert.True(t, audit.Pass)
	assert.Regexp(t, `^fsync=(on|off) synchronous_commit=\w+ shared_buffers=\S+ max_wal_size=\S+ wal_compression=\S+$`, rep.Machine.Durability, "the server's durability is reported")
	assert.Contains(t, table.String(), "\ntargets:\n")
	for _, tgt := range rep.Targets {
		onRates := strings.Contains(tgt.Name, " × ") && !strings.Contains(tgt.Name, "p99")
		p := rep.Phase(strings.Fields(tgt.Name)[0])
		measured := p.VaultCPUPer1k != nil && p.PostgresCPUPer1k != nil && p.BenchCPUPer1k != nil &&
			*p.VaultCPUPer1k+*p.PostgresCPUPer1k+*p.BenchCPUPer1k > 0 // a tiny phase may use less than a clock tick
		assert.Equal(t, onRates && measured, tgt.CPUCeiling != nil,
			"%s: a CPU ceiling exactly on the targets on two phases' rates whose CPU was measured", tgt.Name)
	}

	f, err := os.Open(filepath.Join(out, "bench.csv"))
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	assert.Len(t, rows, 1+len(bench.AllPhases)+14+16)

	for _, p := range []string{bench.PhaseTokenize, bench.PhaseReplay, bench.PhaseUpdate, bench.PhaseRead, bench.PhaseDetokenize, bench.PhaseForward} {
		st, err := os.Stat(filepath.Join(out, p+".cpu.pprof"))
		if assert.NoError(t, err, p) {
			assert.Positive(t, st.Size(), p)
		}
	}
	assert.Contains(t, progress.String(), "requests")
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
