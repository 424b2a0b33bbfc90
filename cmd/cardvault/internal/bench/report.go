package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// Report is a run's result, printed as a table and written as bench.json
// and bench.csv.
type Report struct {
	Machine        Machine       `json:"machine"`
	Config         Config        `json:"config"`
	Preload        *Preload      `json:"preload,omitempty"`
	Phases         []PhaseResult `json:"phases"`
	Ratios         []Ratio       `json:"ratios"`
	Targets        []Target      `json:"targets"`
	VaultRSSPeakMB float64       `json:"vault_rss_peak_mb"`
	Time           string        `json:"time"`
	// Ceiling bounds reads on this machine (nil unless baseline-http and
	// baseline-audit ran).
	Ceiling *Ceiling `json:"read_ceiling,omitempty"`
	// AuditWrites is what the run did to the audit table.
	AuditWrites AuditWrites `json:"audit_writes"`
	// TokenUpdates is what the run did to the token table's rows.
	TokenUpdates TokenUpdates `json:"token_updates"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int     `json:"cpus"`
	MemTotalGB float64 `json:"mem_total_gb"`
	OS         string  `json:"os"`
	Go         string  `json:"go"`
	PostgreSQL string  `json:"postgresql"`
	Durability string  `json:"durability"`
}

// Config is how the run was made.
type Config struct {
	Concurrency       int     `json:"concurrency"`
	Replicas          int     `json:"replicas"`
	PhaseSeconds      float64 `json:"phase_seconds"`
	WarmupSeconds     float64 `json:"warmup_seconds"`
	ImportCards       int     `json:"import_cards"`
	ImportConcurrency int     `json:"import_concurrency"`
	VaultSettings     string  `json:"vault_settings"`
}

// PhaseResult is one phase's measurements. Latencies are of whole requests
// as the client saw them; the import phase has none (its unit is items).
type PhaseResult struct {
	Name          string   `json:"phase"`
	Unit          string   `json:"unit"`
	Requests      int64    `json:"requests"`
	Errors        int64    `json:"errors"`
	Seconds       float64  `json:"seconds"`
	RPS           float64  `json:"rps"`
	P50Ms         float64  `json:"p50_ms"`
	P95Ms         float64  `json:"p95_ms"`
	P99Ms         float64  `json:"p99_ms"`
	MaxMs         float64  `json:"max_ms"`
	VaultCPUPer1k *float64 `json:"vault_cpu_seconds_per_1k"`
	// PostgresCPUPer1k is the server's CPU per 1,000 requests, when it runs
	// on this machine.
	PostgresCPUPer1k *float64 `json:"postgres_cpu_seconds_per_1k"`
	// BenchCPUPer1k is the bench process's own CPU per 1,000 requests: the
	// load generator (and, in their phases, the Stripe simulator and the
	// forward destination it serves).
	BenchCPUPer1k *float64 `json:"bench_cpu_seconds_per_1k"`
	// PostgresIO is the server's WAL, full-page images, block reads and
	// backend writes per request (nil when they could not be read).
	PostgresIO     *ServerIO `json:"postgres_io,omitempty"`
	VaultRSSPeakMB float64   `json:"vault_rss_peak_mb"`
	// SettleSeconds is how long the vault and PostgreSQL took after the
	// phase to finish its background work (counted in the CPU figures).
	SettleSeconds float64 `json:"settle_seconds"`
	// OverheadP50Ms and OverheadP99Ms are the forward phase's vault
	// overhead: each request's latency minus the destination_duration of
	// its answer. Other phases have none.
	OverheadP50Ms *float64 `json:"vault_overhead_p50_ms,omitempty"`
	OverheadP99Ms *float64 `json:"vault_overhead_p99_ms,omitempty"`
	FirstError    string   `json:"first_error,omitempty"`
}

// Ratio compares a vault phase with its reference.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Target is one of the vault's performance targets and whether the run
// met it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Pass bool   `json:"pass"`
	// Skipped is set when a phase the target is measured on did not run
	// (--phases); Pass is then false.
	Skipped bool `json:"skipped,omitempty"`
	// CPUCeiling, for a target on a ratio of two phases' rates, is the
	// ratio the phase would have reached had its requests, at the CPU each
	// took in this run, kept every CPU busy (cpuCeiling); nil otherwise.
	CPUCeiling *float64 `json:"cpu_ceiling,omitempty"`
}

// onPhases returns t, skipped when any of phases did not run and failed
// when any of them had errors (a phase whose requests fail at once runs
// at any speed).
func (r *Report) onPhases(t Target, phases ...string) Target {
	for _, name := range phases {
		switch {
		case !r.ran(name):
			t.Got, t.Pass, t.Skipped = "-", false, true
		case r.Phase(name).Errors > 0:
			t.Got, t.Pass = t.Got+" (errors)", false
		}
	}
	return t
}

// ran reports whether the named phase ran.
func (r *Report) ran(name string) bool {
	return slices.ContainsFunc(r.Phases, func(p PhaseResult) bool { return p.Name == name })
}

// Ceiling is the most reads a second this machine could serve if the
// vault's own work for a read, beyond answering HTTP, cost nothing: every
// process's CPU per baseline-http request (the load generator's and the
// vault's HTTP floor) plus PostgreSQL's per read in baseline-audit (finding
// the token and making its audit row durable), over the machine's CPUs.
type Ceiling struct {
	HTTPCPUMs      float64 `json:"http_cpu_ms"`      // bench + vault + PostgreSQL CPU per baseline-http request
	AuditCPUMs     float64 `json:"audit_cpu_ms"`     // PostgreSQL (and bench) CPU per read in baseline-audit
	ReadsPerSecond float64 `json:"reads_per_second"` // CPUs × 1000 / (HTTPCPUMs + AuditCPUMs)
	OfBaselineHTTP float64 `json:"of_baseline_http"` // ReadsPerSecond / baseline-http's requests per second
}

// cpuMs returns every process's CPU milliseconds per request of p (the
// vault, PostgreSQL and the bench itself), and whether all were measured.
func cpuMs(p PhaseResult) (float64, bool) {
	if p.PostgresCPUPer1k == nil || p.BenchCPUPer1k == nil || p.VaultCPUPer1k == nil {
		return 0, false
	}
	return *p.PostgresCPUPer1k + *p.BenchCPUPer1k + *p.VaultCPUPer1k, true
}

// readCeiling returns the read ceiling, or nil when baseline-http or
// baseline-audit did not run or their CPU was not measured.
func (r *Report) readCeiling() *Ceiling {
	if !r.ran(PhaseBaselineHTTP) || !r.ran(PhaseBaselineAudit) {
		return nil
	}
	httpPhase := r.Phase(PhaseBaselineHTTP)
	h, ok1 := cpuMs(httpPhase)
	audit := r.Phase(PhaseBaselineAudit).PostgresCPUPer1k
	if !ok1 || audit == nil || h+*audit <= 0 || httpPhase.RPS <= 0 {
		return nil
	}
	a := *audit
	rps := float64(r.Machine.CPUs) * 1000 / (h + a)
	return &Ceiling{HTTPCPUMs: round3(h), AuditCPUMs: round3(a), ReadsPerSecond: round1(rps), OfBaselineHTTP: round3(rps / httpPhase.RPS)}
}

// cpuCeiling returns the most phase could have reached as a multiple of
// ref's rate on this machine's CPUs at the CPU its requests took in this
// run (the vault's, PostgreSQL's and the bench's together: the three share
// the machine), or nil when either phase did not run or phase's CPU was
// not measured (or came to less than a clock tick). A target above it was out of reach in this run whatever
// the vault's batching or concurrency, unless a request cost less CPU.
func (r *Report) cpuCeiling(phase, ref string) *float64 {
	ms, ok := cpuMs(r.Phase(phase))
	refRPS := r.Phase(ref).RPS
	if !ok || ms <= 0 || refRPS <= 0 {
		return nil
	}
	c := round3(float64(r.Machine.CPUs) * 1000 / ms / refRPS)
	return &c
}

// newReport returns the report's header: the machine and the options.
func newReport(env *environment, o Options) *Report {
	var pre *Preload
	if o.Preload > 0 {
		p := env.preload
		pre = &p
	}
	return &Report{
		Preload: pre,
		Machine: Machine{CPUs: runtime.NumCPU(), MemTotalGB: round1(e2e.MemTotalGB()), OS: runtime.GOOS + "/" + runtime.GOARCH,
			Go: runtime.Version(), PostgreSQL: env.pgVersion, Durability: env.durability},
		Config: Config{Concurrency: o.Concurrency, Replicas: o.Replicas, PhaseSeconds: o.Duration.Seconds(), WarmupSeconds: o.Warmup.Seconds(), ImportCards: o.ImportCards,
			ImportConcurrency: o.ImportConcurrency,
			VaultSettings: "VAULT_RATE_LIMIT=0 (no per-key limit), VAULT_MAX_INFLIGHT above the bench's concurrency, " +
				"VAULT_IMPORT_RATE=0 (unthrottled), VAULT_LOG_LEVEL=info (access log to vault.log), " +
				"VAULT_EGRESS_ALLOW_LOOPBACK=true and SSL_CERT_FILE=the loopback destination's certificate (forward)"},
		Time: time.Now().UTC().Format(time.RFC3339),
	}
}

// newPhaseResult returns a phase's load figures.
func newPhaseResult(name string, r e2e.Result) PhaseResult {
	p := PhaseResult{Name: name, Unit: "requests", Requests: r.Requests, Errors: r.Errors, Seconds: round3(r.Elapsed.Seconds())}
	if name == PhaseImport {
		p.Unit = "items"
	}
	if name == PhaseFileImport {
		p.Unit = "rows"
	}
	if name == PhaseBaselineAudit {
		p.Unit = "reads" // latencies are of batches
	}
	if r.Elapsed > 0 {
		p.RPS = round1(float64(r.Requests) / r.Elapsed.Seconds())
	}
	ms := func(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }
	p.P50Ms, p.P95Ms = ms(e2e.Percentile(r.Latencies, 0.50)), ms(e2e.Percentile(r.Latencies, 0.95))
	p.P99Ms, p.MaxMs = ms(e2e.Percentile(r.Latencies, 0.99)), ms(e2e.Percentile(r.Latencies, 1))
	if r.FirstErr != nil {
		p.FirstError = r.FirstErr.Error()
	}
	return p
}

// Phase returns the named phase, or a zero one.
func (r *Report) Phase(name string) PhaseResult {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return PhaseResult{Name: name}
}

// totalErrors sums the errors of every phase.
func (r *Report) totalErrors() int64 {
	var n int64
	for _, p := range r.Phases {
		n += p.Errors
	}
	return n
}

// finish computes the ratios, the peak RSS and the targets.
func (r *Report) finish(child *e2e.Vault) {
	ratio := func(a, b string) float64 {
		if d := r.Phase(b).RPS; d > 0 {
			return round3(r.Phase(a).RPS / d)
		}
		return 0
	}
	pairs := [][2]string{{PhaseTokenize, PhaseBaselineInsert}, {PhaseReplay, PhaseTokenize}, {PhaseUpdate, PhaseTokenize},
		{PhaseRead, PhaseBaselineSelect}, {PhaseDetokenize, PhaseBaselineSelect}, {PhaseImport, PhaseTokenize},
		{PhaseBaselineHTTP, PhaseBaselineSelect}, {PhaseRead, PhaseBaselineHTTP}, {PhaseDetokenize, PhaseBaselineHTTP},
		{PhaseReadFloor, PhaseBaselineHTTP}, {PhaseRead, PhaseReadFloor}, {PhaseDetokenize, PhaseReadFloor},
		{PhaseForward, PhaseDetokenize}, {PhaseFileImport, PhaseTokenize}}
	r.Ratios = nil
	for _, q := range pairs {
		if r.ran(q[0]) && r.ran(q[1]) {
			r.Ratios = append(r.Ratios, Ratio{q[0] + "/" + q[1], ratio(q[0], q[1])})
		}
	}
	r.Ceiling = r.readCeiling()
	hwm, _ := child.PeakRSS()
	r.VaultRSSPeakMB = round1(hwm)
	for _, p := range r.Phases {
		r.VaultRSSPeakMB = max(r.VaultRSSPeakMB, p.VaultRSSPeakMB)
	}
	atMost := func(name string, got, want float64, unit string) Target {
		return Target{Name: name, Want: "≤ " + fmtNum(want) + unit, Got: fmtNum(got) + unit, Pass: got <= want}
	}
	// faster is the target phase ≥ want × ref, with its CPU ceiling.
	faster := func(name, phase, ref string, want float64) Target {
		got := ratio(phase, ref)
		t := Target{Name: name, Want: "≥ " + fmtNum(want), Got: fmtNum(got), Pass: got >= want, CPUCeiling: r.cpuCeiling(phase, ref)}
		return r.onPhases(t, phase, ref)
	}
	errs := r.totalErrors()
	fwd := r.Phase(PhaseForward)
	sel := r.Phase(PhaseBaselineSelect).P99Ms
	on := r.onPhases
	r.Targets = []Target{
		faster("tokenize ≥ 0.9 × baseline-insert", PhaseTokenize, PhaseBaselineInsert, 0.9),
		on(atMost("tokenize p99", r.Phase(PhaseTokenize).P99Ms, 25, " ms"), PhaseTokenize),
		faster("tokenize-replay ≥ 1.0 × tokenize", PhaseReplay, PhaseTokenize, 1.0),
		faster("tokenize-update ≥ 0.7 × tokenize", PhaseUpdate, PhaseTokenize, 0.7),
		faster("read ≥ 0.5 × baseline-http", PhaseRead, PhaseBaselineHTTP, 0.5),
		faster("detokenize ≥ 0.45 × baseline-http", PhaseDetokenize, PhaseBaselineHTTP, 0.45),
		on(atMost("read p99 ≤ 1.5 × baseline-select p99", p99Ratio(r.Phase(PhaseRead).P99Ms, sel), 1.5, " ×"), PhaseRead, PhaseBaselineSelect),
		on(atMost("detokenize p99 ≤ 1.5 × baseline-select p99", p99Ratio(r.Phase(PhaseDetokenize).P99Ms, sel), 1.5, " ×"), PhaseDetokenize, PhaseBaselineSelect),
		{Name: "zero errors in every phase", Want: "0", Got: strconv.FormatInt(errs, 10), Pass: errs == 0},
		atMost("vault peak RSS", r.VaultRSSPeakMB, 150, " MB"),
		faster("import ≥ 0.3 × tokenize", PhaseImport, PhaseTokenize, 0.3),
		faster("forward ≥ 0.8 × detokenize", PhaseForward, PhaseDetokenize, 0.8),
		on(atMost("forward vault overhead p50", orInf(fwd.OverheadP50Ms), 2, " ms"), PhaseForward),
		on(atMost("forward vault overhead p99", orInf(fwd.OverheadP99Ms), 10, " ms"), PhaseForward),
		faster("file-import ≥ 3 × tokenize", PhaseFileImport, PhaseTokenize, 3),
		{Name: "audit rows never updated", Want: "0 of > 0 inserted", Got: strconv.FormatInt(r.AuditWrites.Updated, 10),
			Pass: r.AuditWrites.Updated == 0 && r.AuditWrites.Inserted > 0},
	}
}

// p99Ratio returns a phase's p99 over its reference's, or +Inf when the
// reference has none (no target passes on it).
func p99Ratio(p99, ref float64) float64 {
	if ref <= 0 {
		return math.Inf(1)
	}
	return round3(p99 / ref)
}

// orInf returns *v, or +Inf when the measurement is missing (no target
// passes on it).
func orInf(v *float64) float64 {
	if v == nil {
		return math.Inf(1)
	}
	return *v
}

// printReport writes the table, the ratios and the targets.
func printReport(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "\ncardvault bench — %d CPUs, %.1f GB RAM, %s, %s, PostgreSQL %s (%s); concurrency %d, %gs per phase after %gs of warm-up\n\n",
		m.CPUs, m.MemTotalGB, m.OS, m.Go, m.PostgreSQL, m.Durability, r.Config.Concurrency, r.Config.PhaseSeconds, r.Config.WarmupSeconds)
	if r.Config.Replicas > 1 {
		fmt.Fprintf(w, "%d vault processes against the one database, the load split evenly; vault CPU is their sum, RSS the largest\n\n", r.Config.Replicas)
	}
	if p := r.Preload; p != nil {
		fmt.Fprintf(w, "preloaded %d tokens and %d audit rows in %.1f s, then VACUUM (ANALYZE) and CHECKPOINT in %.1f s: %.0f bytes per token, %.0f per audit row (pg_total_relation_size)",
			p.Tokens, p.AuditRows, p.SeedSeconds, p.VacuumSeconds, p.TokenBytes, p.AuditBytes)
		if p.PrewarmMB > 0 {
			fmt.Fprintf(w, "; the token table's indexes, %.0f MB, read into shared buffers before the vault's phases in %.1f s (pg_prewarm)",
				p.PrewarmMB, p.PrewarmSeconds)
		}
		fmt.Fprint(w, "\n\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\trequests\trps\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\tvault CPU s/1k\tvault RSS MB\tPG CPU s/1k\tbench CPU s/1k\t")
	for _, p := range r.Phases {
		lat := []string{fmtNum(p.P50Ms), fmtNum(p.P95Ms), fmtNum(p.P99Ms), fmtNum(p.MaxMs)}
		if p.Unit != "requests" {
			lat = []string{"-", "-", "-", "-"}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", p.Name, p.Requests, fmtNum(p.RPS),
			lat[0], lat[1], lat[2], lat[3], p.Errors, fmtOpt(p.VaultCPUPer1k, "-"), fmtNum(p.VaultRSSPeakMB),
			fmtOpt(p.PostgresCPUPer1k, "-"), fmtOpt(p.BenchCPUPer1k, "-"))
	}
	tw.Flush()
	printServerIO(w, r.Phases)
	fmt.Fprintln(w, "\n(import: requests are payment methods imported end to end, rps is items per second)")
	if r.Phase(PhaseFileImport).Requests > 0 {
		fmt.Fprintln(w, "(file-import: requests are rows of the card file imported end to end, upload and verification included, rps is rows per second)")
	}
	if p := r.Phase(PhaseForward); p.OverheadP50Ms != nil {
		fmt.Fprintf(w, "(forward: the vault's own overhead, latency minus the answer's destination_duration: p50 %s ms, p99 %s ms)\n",
			fmtOpt(p.OverheadP50Ms, "-"), fmtOpt(p.OverheadP99Ms, "-"))
	}
	fmt.Fprintf(w, "(audit: %d rows, %d inserted and %d updated according to pg_stat_user_tables)\n",
		r.AuditWrites.Rows, r.AuditWrites.Inserted, r.AuditWrites.Updated)
	fmt.Fprintf(w, "(tokens: %d row versions rewritten, %d of them HOT, within their page and with no index entry)\n",
		r.TokenUpdates.Updated, r.TokenUpdates.HOT)
	if c := r.Ceiling; c != nil {
		fmt.Fprintf(w, "(read ceiling: baseline-http's CPU, %s ms a request in all processes, plus PostgreSQL's for an audited lookup in baseline-audit, %s ms a read, "+
			"on %d CPUs: at most %s reads/s, %s × baseline-http, even if the vault's own work for a read cost nothing)\n",
			fmtNum(c.HTTPCPUMs), fmtNum(c.AuditCPUMs), r.Machine.CPUs, fmtNum(c.ReadsPerSecond), fmtNum(c.OfBaselineHTTP))
	}
	if f, h := r.Phase(PhaseReadFloor), r.Phase(PhaseBaselineHTTP); f.RPS > 0 && h.RPS > 0 {
		fmt.Fprintf(w, "(read floor: a bare HTTP server whose only work is baseline-audit's statement, batched as the vault batches reads, "+
			"answered %s reads/s, %s × baseline-http: a vault that makes each read's audit row durable before answering does at least this work)\n",
			fmtNum(f.RPS), fmtNum(round3(f.RPS/h.RPS)))
	}
	if slices.ContainsFunc(r.Targets, func(t Target) bool { return t.CPUCeiling != nil }) {
		fmt.Fprintf(w, "(CPU ceiling, beside a target on two phases' rates: the ratio the phase would reach had its requests, "+
			"at the CPU each took here in the vault, PostgreSQL and the bench together, kept all %d CPUs busy)\n", r.Machine.CPUs)
	}
	fmt.Fprintln(w, "\nratios:")
	for _, q := range r.Ratios {
		fmt.Fprintf(w, "  %-34s %s\n", q.Name, fmtNum(q.Value))
	}
	printTargets(w, r.Targets)
	for _, p := range r.Phases {
		if p.FirstError != "" {
			fmt.Fprintf(w, "\n%s: %d errors, the first: %s", p.Name, p.Errors, p.FirstError)
		}
	}
	fmt.Fprintln(w)
}

// printTargets writes each target's verdict, and its CPU ceiling when it
// has one.
func printTargets(w io.Writer, targets []Target) {
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range targets {
		verdict := "PASS"
		switch {
		case t.Skipped:
			verdict = "SKIP"
		case !t.Pass:
			verdict = "FAIL"
		}
		line := fmt.Sprintf("  %s  %-44s got %-10s want %-8s", verdict, t.Name, t.Got, t.Want)
		if t.CPUCeiling != nil {
			line += "  CPU ceiling " + fmtNum(*t.CPUCeiling)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

// writeReport writes bench.json and bench.csv into dir.
func writeReport(dir string, r *Report) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "bench.csv"))
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	_ = cw.Write([]string{"kind", "name", "requests", "errors", "seconds", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms",
		"vault_cpu_seconds_per_1k", "vault_rss_peak_mb", "postgres_cpu_seconds_per_1k", "vault_overhead_p50_ms",
		"vault_overhead_p99_ms", "bench_cpu_seconds_per_1k", "postgres_wal_kb_per_request", "postgres_fpi_per_request",
		"postgres_blocks_read_per_request", "postgres_backend_writes_per_request", "value", "want", "pass", "cpu_ceiling"})
	for _, p := range r.Phases {
		row := []string{"phase", p.Name, strconv.FormatInt(p.Requests, 10), strconv.FormatInt(p.Errors, 10),
			fmtNum(p.Seconds), fmtNum(p.RPS), fmtNum(p.P50Ms), fmtNum(p.P95Ms), fmtNum(p.P99Ms), fmtNum(p.MaxMs),
			fmtOpt(p.VaultCPUPer1k, ""), fmtNum(p.VaultRSSPeakMB), fmtOpt(p.PostgresCPUPer1k, ""),
			fmtOpt(p.OverheadP50Ms, ""), fmtOpt(p.OverheadP99Ms, ""), fmtOpt(p.BenchCPUPer1k, "")}
		_ = cw.Write(append(append(row, p.PostgresIO.columns()...), "", "", "", ""))
	}
	blank := make([]string, 18)
	for _, q := range r.Ratios {
		_ = cw.Write(append(append([]string{"ratio", q.Name}, blank...), fmtNum(q.Value), "", "", ""))
	}
	for _, t := range r.Targets {
		_ = cw.Write(append(append([]string{"target", t.Name}, blank...), t.Got, t.Want, strconv.FormatBool(t.Pass),
			fmtOpt(t.CPUCeiling, "")))
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fmtOpt prints an optional measurement, or none when it is missing.
func fmtOpt(v *float64, none string) string {
	if v == nil {
		return none
	}
	return fmtNum(*v)
}

// fmtNum prints a measurement without trailing zeros.
func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
