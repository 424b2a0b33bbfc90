package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// Phase names, in the order they run.
const (
	PhaseBaselineInsert = "baseline-insert"
	PhaseTokenize       = "tokenize"
	PhaseReplay         = "tokenize-replay"
	PhaseUpdate         = "tokenize-update"
	PhaseBaselineSelect = "baseline-select"
	PhaseBaselineHTTP   = "baseline-http"
	PhaseRead           = "read"
	PhaseDetokenize     = "detokenize"
	PhaseForward        = "forward"
	PhaseImport         = "import"
)

// benchRun holds one run's state: the environment, the HTTP client, and the
// ids each phase leaves for the next, one slice per worker.
type benchRun struct {
	env      *environment
	o        Options
	client   *e2e.Client // the first vault's, for the calls around the phases
	conns    []*e2e.Conn // worker w's connection, to vault w % vaults
	runID    string
	tokenIDs [][]string // tokens from tokenize
	tokenNos [][]int    // the request number each of tokenIDs was made by (its business key and card)
	allRows  []uuid.UUID
	allToks  []string
	allNos   []int
	fwd      forwardState // the forward phase's
	warmed   bool         // the token table's indexes were prewarmed
}

// runPhases runs the selected phases and returns the report. It returns an
// error when the context ends or the forward phase's destination cannot be
// allow-listed.
func runPhases(ctx context.Context, env *environment, o Options) (*Report, error) {
	progress := o.Progress
	var id [4]byte
	_, _ = rand.Read(id[:])
	b := &benchRun{env: env, o: o, client: e2e.NewClient(env.child.URL(), env.apiKey, 2*o.Concurrency, 30*time.Second),
		runID: hex.EncodeToString(id[:]), tokenIDs: make([][]string, o.Concurrency),
		tokenNos: make([][]int, o.Concurrency)}
	defer b.client.Close()
	conns, err := e2e.NewConns(env.vaultURLs(), env.apiKey, o.Concurrency, 30*time.Second)
	if err != nil {
		return nil, err
	}
	b.conns = conns
	defer e2e.CloseConns(conns)
	rep := newReport(env, o)
	steps := []struct {
		name  string
		vault bool // the vault serves this phase: measure its CPU, profile it
		run   func() e2e.Result
	}{
		{PhaseBaselineInsert, false, func() e2e.Result { return b.timed(ctx, PhaseBaselineInsert, progress, b.baselineInsert) }},
		{PhaseTokenize, true, func() e2e.Result { return b.timed(ctx, PhaseTokenize, progress, b.tokenize) }},
		{PhaseReplay, true, func() e2e.Result { return b.timed(ctx, PhaseReplay, progress, b.replay) }},
		{PhaseUpdate, true, func() e2e.Result { return b.timed(ctx, PhaseUpdate, progress, b.update) }},
		{PhaseBaselineSelect, false, func() e2e.Result { return b.timed(ctx, PhaseBaselineSelect, progress, b.baselineSelect) }},
		{PhaseBaselineAudit, false, func() e2e.Result { return b.timedAuditFloor(ctx) }},
		{PhaseBaselineHTTP, true, func() e2e.Result { return b.timed(ctx, PhaseBaselineHTTP, progress, b.baselineHTTP) }},
		{PhaseReadFloor, false, func() e2e.Result { return b.timedReadFloor(ctx) }},
		{PhaseRead, true, func() e2e.Result { return b.timed(ctx, PhaseRead, progress, b.read) }},
		{PhaseDetokenize, true, func() e2e.Result { return b.timed(ctx, PhaseDetokenize, progress, b.detokenize) }},
		{PhaseForward, true, func() e2e.Result { return b.timedForward(ctx) }},
		{PhaseImport, true, func() e2e.Result { return b.importJob(ctx, progress) }},
		{PhaseFileImport, true, func() e2e.Result { return b.fileImport(ctx, progress) }},
	}
	selected, err := selectPhases(o.Phases)
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		if !selected[s.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.drawFrom(s.name, env.preIDs)
		if s.name == PhaseForward {
			if err := b.addDestination(ctx); err != nil {
				return nil, err
			}
		}
		if err := b.warm(ctx, s.name, rep.Preload); err != nil {
			return nil, err
		}
		runtime.GC() // the bench's own garbage from the last phase, not this one's
		p := b.measure(ctx, s.name, s.vault, s.run)
		if s.name == PhaseForward {
			b.addOverhead(&p)
		}
		rep.Phases = append(rep.Phases, p)
		if s.name == PhaseBaselineInsert {
			if err := env.dropInsertTable(ctx); err != nil {
				return nil, err
			}
		}
	}
	if b.o.Profile {
		b.saveProfile(ctx, "heap", "heap.pprof")
	}
	aw, err := readAuditWrites(ctx, env.pool)
	if err != nil {
		return nil, err
	}
	rep.AuditWrites = aw
	if rep.TokenUpdates, err = readTokenUpdates(ctx, env.pool); err != nil {
		return nil, err
	}
	rep.finish(env.child)
	return rep, nil
}

// warm prewarms, on a preloaded database, the indexes of the table the
// next phase inserts into: bench_tokens' before baseline-insert, tokens'
// before the first phase after it (pre, the report's preload, records
// how much). It returns the database's error.
func (b *benchRun) warm(ctx context.Context, phase string, pre *Preload) error {
	var table string
	switch {
	case pre == nil:
		return nil
	case phase == PhaseBaselineInsert:
		table = "bench_tokens"
	case !b.warmed:
		table, b.warmed = "tokens", true
	default:
		return nil
	}
	start := time.Now()
	mb, err := prewarm(ctx, b.env.pool, table)
	if err != nil {
		return fmt.Errorf("prewarming %s: %w", table, err)
	}
	if table == "tokens" {
		pre.PrewarmMB, pre.PrewarmSeconds = mb, round1(time.Since(start).Seconds())
	}
	fmt.Fprintf(b.o.Progress, "bench: read %.0f MB of the indexes of %s into shared buffers in %.1f s\n", mb, table, time.Since(start).Seconds())
	return nil
}

// measure runs one phase and adds what the vault and PostgreSQL spent on it.
func (b *benchRun) measure(ctx context.Context, name string, vault bool, run func() e2e.Result) PhaseResult {
	io0, ioErr0 := readServerIO(ctx, b.env.pool)
	pg0, pgErr0 := b.pgCPU()
	cpu0, cpuErr0 := b.vaultCPU()
	own0, ownErr0 := e2e.CPUSeconds(os.Getpid())
	b.resetPeakRSS()
	var profiled chan struct{}
	if vault && b.o.Profile {
		profiled = make(chan struct{})
		go func() { defer close(profiled); b.cpuProfile(ctx, name) }()
	}
	res := run()
	if profiled != nil {
		<-profiled
	}
	var settled time.Duration
	if !b.o.SkipSettle {
		settled = b.settle(ctx)
	}
	cpu1, cpuErr1 := b.vaultCPU()
	pg1, pgErr1 := b.pgCPU()
	own1, ownErr1 := e2e.CPUSeconds(os.Getpid())
	io1, ioErr1 := readServerIO(ctx, b.env.pool)
	p := newPhaseResult(name, res)
	p.SettleSeconds = round3(settled.Seconds())
	all := max(res.All, res.Requests) // the CPU went to the warm-up's requests too
	p.PostgresCPUPer1k = per1k(pg0, pg1, pgErr0, pgErr1, all)
	p.BenchCPUPer1k = per1k(own0, own1, ownErr0, ownErr1, all)
	p.PostgresIO = perRequest(io0, io1, ioErr0, ioErr1, all)
	p.VaultRSSPeakMB = round1(b.resetPeakRSS())
	if vault {
		p.VaultCPUPer1k = per1k(cpu0, cpu1, cpuErr0, cpuErr1, all)
	}
	return p
}

// per1k returns the CPU seconds between the readings c0 and c1 per 1,000
// of n requests, or nil when a reading failed or there were none.
func per1k(c0, c1 float64, err0, err1 error, n int64) *float64 {
	if err0 != nil || err1 != nil || n <= 0 {
		return nil
	}
	v := round3((c1 - c0) / float64(n) * 1000)
	return &v
}

// Settling after a phase: the vault and PostgreSQL count as idle once they
// used less than settleIdle CPU seconds in each of settleQuiet consecutive
// settleWindows (longer than the vault's 1 s background ticks, such as the
// audit chainer's), and the wait ends after settleMax whatever they do.
const (
	settleWindow = 250 * time.Millisecond
	settleIdle   = 0.025 // a tenth of a CPU over the window
	settleQuiet  = 6
	settleMax    = 30 * time.Second
)

// settle waits until the vault and the PostgreSQL server are idle again, so
// that the work a phase leaves behind (the audit chainer linking its rows,
// autovacuum) counts for that phase's CPU figures rather than slowing the
// next phase. It returns how long it waited.
func (b *benchRun) settle(ctx context.Context) time.Duration {
	start := time.Now()
	busy := func() float64 {
		v, _ := b.vaultCPU()
		p, _ := b.pgCPU()
		return v + p
	}
	for quiet := 0; quiet < settleQuiet && time.Since(start) < settleMax; {
		before := busy()
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(settleWindow):
		}
		if busy()-before < settleIdle {
			quiet++
		} else {
			quiet = 0
		}
	}
	return time.Since(start)
}

// vaultCPU returns the CPU time of every vault process so far.
func (b *benchRun) vaultCPU() (float64, error) {
	var sum float64
	for _, v := range b.env.vaults() {
		c, err := v.CPUSeconds()
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

// resetPeakRSS returns the largest peak RSS of the vault processes since
// the last reset, and resets them.
func (b *benchRun) resetPeakRSS() float64 {
	var peak float64
	for _, v := range b.env.vaults() {
		peak = max(peak, v.ResetPeakRSS())
	}
	return peak
}

// cl returns worker w's connection.
func (b *benchRun) cl(w int) *e2e.Conn { return b.conns[w] }

// pgCPU returns the CPU time of the PostgreSQL server so far, when it runs
// on this machine.
func (b *benchRun) pgCPU() (float64, error) {
	if b.env.pgPID == 0 {
		return 0, errors.New("the server is not local")
	}
	return e2e.TreeCPUSeconds(b.env.pgPID)
}

// timed runs do for the configured duration and concurrency.
func (b *benchRun) timed(ctx context.Context, name string, progress io.Writer, do e2e.Op) e2e.Result {
	return e2e.RunLoad(ctx, e2e.LoadOptions{Name: name, Workers: b.o.Concurrency, Warmup: b.o.Warmup,
		Duration: b.o.Duration, Progress: progress}, do)
}

// drawFrom fills what phase draws from, whichever of the phases drawing
// from the same pool ran before it (--phases may pick any): replays' and
// updates' business keys, and the tokens that the read baselines, reads,
// reveals and forwards use (tokenize's and the preloaded sample, preIDs).
func (b *benchRun) drawFrom(phase string, preIDs []uuid.UUID) {
	switch phase {
	case PhaseReplay, PhaseUpdate:
		b.allNos = flatten(b.tokenNos)
	case PhaseBaselineSelect, PhaseBaselineAudit, PhaseReadFloor:
		b.allRows = append(tokenUUIDs(flatten(b.tokenIDs)), preIDs...)
	case PhaseRead, PhaseDetokenize, PhaseForward:
		b.allToks = flatten(b.tokenIDs)
		for _, id := range preIDs {
			b.allToks = append(b.allToks, id.String())
		}
	}
}

// tokenUUIDs returns the ids among ids that are UUIDs (every token id the
// vault answers).
func tokenUUIDs(ids []string) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		if u, err := uuid.Parse(id); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// flatten concatenates per-worker id slices.
func flatten[T any](parts [][]T) []T {
	var out []T
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Sizes of the token columns as the vault writes them for the bench's card
// (Tink AES-256-GCM: 5-byte prefix + 12-byte nonce + plaintext + 16-byte
// tag; the fingerprint is an HMAC-SHA256 PRF output).
const (
	fingerprintSize = 32
	panCTSize       = 5 + 12 + 16 + 16 // a 16-digit PAN
	nameCTSize      = 5 + 12 + 8 + 16  // "John Doe"
	cvcCTSize       = 5 + 12 + 3 + 16  // a 3-digit CVC
)

// benchTokenColumns are the token columns, in the vault's order.
const benchTokenColumns = `id, tenant_id, business_key, fingerprint, fingerprint_key_id, key_id,
	pan_ct, name_ct, cvc_ct, cvc_expires_at, iin, last_four, pan_length, scheme,
	exp_month, exp_year, metadata, created_at, updated_at`

// baselineInsert inserts one token-shaped row into bench_tokens in its own
// (durable) transaction.
func (b *benchRun) baselineInsert(ctx context.Context, w, i int) error {
	blob := make([]byte, fingerprintSize+panCTSize+nameCTSize+cvcCTSize)
	_, _ = rand.Read(blob)
	fp, rest := blob[:fingerprintSize], blob[fingerprintSize:]
	pan, rest := rest[:panCTSize], rest[panCTSize:]
	name, cvc := rest[:nameCTSize], rest[nameCTSize:]
	id, now := uuid.Must(uuid.NewV7()), time.Now().UTC() // time-ordered, as the vault makes token ids
	exp := now.Add(time.Hour)
	_, err := b.env.pool.Exec(ctx, `INSERT INTO bench_tokens (`+benchTokenColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		id, b.env.tenantID, b.businessKey(i), fp, int64(1), int64(1), pan, name, cvc, &exp,
		"424242", "4242", 16, "VISA", 4, 2033, []byte("{}"), now, now)
	return err
}

// benchRow receives a token row.
type benchRow struct {
	id, tenantID                      uuid.UUID
	businessKey                       *string
	fingerprint, pan, name, cvc, meta []byte
	fpKeyID, keyID                    int64
	cvcExpires                        *time.Time
	iin, lastFour, scheme             string
	panLen, expMonth, expYear         int16
	created, updated                  time.Time
}

// baselineSelect reads one random row of the vault's token table by
// primary key: the rows the read phases read, in the same cache.
func (b *benchRun) baselineSelect(ctx context.Context, _, _ int) error {
	if len(b.allRows) == 0 {
		return errors.New("tokenize left no tokens to select")
	}
	var r benchRow
	return b.env.pool.QueryRow(ctx, `SELECT `+benchTokenColumns+` FROM tokens WHERE id = $1`,
		b.allRows[mrand.IntN(len(b.allRows))]).Scan(r.dest()...)
}

// dest returns where a row of benchTokenColumns scans into, in their order.
func (r *benchRow) dest() []any {
	return []any{&r.id, &r.tenantID, &r.businessKey, &r.fingerprint, &r.fpKeyID, &r.keyID, &r.pan, &r.name,
		&r.cvc, &r.cvcExpires, &r.iin, &r.lastFour, &r.panLen, &r.scheme, &r.expMonth, &r.expYear, &r.meta,
		&r.created, &r.updated}
}

// baselineHTTP asks the vault's GET /healthz: the same listener, HTTP
// stack, middleware and access log as every request, and no database, no
// authentication, no crypto. It is the floor of any answer over HTTP on
// this machine, the reference that read and detokenize cannot pass.
func (b *benchRun) baselineHTTP(ctx context.Context, w, _ int) error {
	_, err := b.cl(w).Call(ctx, http.MethodGet, "/healthz", nil, http.StatusOK)
	return err
}

// businessKey returns the i-th business key of this run, shaped like a
// Stripe payment method id.
func (b *benchRun) businessKey(i int) string {
	return "pm_bench" + b.runID + "x" + strconv.Itoa(i)
}

// tokenize forwards one new card under a new business key, as Stripe does.
func (b *benchRun) tokenize(ctx context.Context, w, i int) error {
	out, err := b.cl(w).Call(ctx, http.MethodPost, "/cde-import", e2e.ForwardBody(b.businessKey(i), e2e.CardNumber(i)), http.StatusCreated)
	if err != nil {
		return err
	}
	id, err := e2e.TokenID(out)
	if err != nil {
		return fmt.Errorf("POST /cde-import: %w", err)
	}
	b.tokenIDs[w] = append(b.tokenIDs[w], id)
	b.tokenNos[w] = append(b.tokenNos[w], i)
	return nil
}

// replay forwards again exactly what tokenize stored for a random one of
// its requests (same business key, same card), as Stripe does when it
// forwards a payment method twice: the existing token answers, 200.
func (b *benchRun) replay(ctx context.Context, w, _ int) error {
	if len(b.allNos) == 0 {
		return errors.New("tokenize left no tokens to replay")
	}
	n := b.allNos[mrand.IntN(len(b.allNos))]
	_, err := b.cl(w).Call(ctx, http.MethodPost, "/cde-import", e2e.ForwardBody(b.businessKey(n), e2e.CardNumber(n)), http.StatusOK)
	return err
}

// updateCardOffset numbers the new cards of the update phase far above
// any card tokenize forwards.
const updateCardOffset = 100_000_000

// update forwards a new card under the business key of a random one of
// tokenize's requests, as an account updater does: the token keeps its id
// and gets the new card (scope tokens:update), 200.
func (b *benchRun) update(ctx context.Context, w, i int) error {
	if len(b.allNos) == 0 {
		return errors.New("tokenize left no tokens to update")
	}
	n := b.allNos[mrand.IntN(len(b.allNos))]
	_, err := b.cl(w).Call(ctx, http.MethodPost, "/cde-import", e2e.ForwardBody(b.businessKey(n), e2e.CardNumber(updateCardOffset+i)), http.StatusOK)
	return err
}

// randomToken returns one of the tokens tokenize made.
func (b *benchRun) randomToken() (string, error) {
	if len(b.allToks) == 0 {
		return "", errors.New("tokenize left no tokens to read")
	}
	return b.allToks[mrand.IntN(len(b.allToks))], nil
}

// read fetches the masked record of a random token.
func (b *benchRun) read(ctx context.Context, w, _ int) error {
	id, err := b.randomToken()
	if err != nil {
		return err
	}
	_, err = b.cl(w).Call(ctx, http.MethodGet, "/tokens/"+id, nil, http.StatusOK)
	return err
}

// detokenizeBody is the optional body of a reveal: the reason audited.
var detokenizeBody = []byte(`{"reason":"cardvault bench"}`)

// detokenize reveals a random token.
func (b *benchRun) detokenize(ctx context.Context, w, _ int) error {
	id, err := b.randomToken()
	if err != nil {
		return err
	}
	_, err = b.cl(w).Call(ctx, http.MethodPost, "/tokens/"+id+"/detokenize", detokenizeBody, http.StatusOK)
	return err
}

// importRecord is the part of an import job's record the bench reads.
type importRecord struct {
	ID            string  `json:"id"`
	Status        string  `json:"status"`
	FailureReason *string `json:"failure_reason"`
	Counts        struct {
		Total     int64 `json:"total"`
		Successes int64 `json:"successes"`
		Failures  int64 `json:"failures"`
		Skipped   int64 `json:"skipped"`
	} `json:"counts"`
}

// importTimeout bounds the import phase.
const importTimeout = 10 * time.Minute

// importJob starts an import of the simulator's payment methods and polls
// it until it ends. Each imported payment method counts as a request; each
// failed one, and a job that does not finish, as an error.
func (b *benchRun) importJob(ctx context.Context, progress io.Writer) e2e.Result {
	start := time.Now()
	body := fmt.Appendf(nil, `{"provider":"stripe","stripe":{"api_key":%q}}`, stripeKey)
	out, err := b.client.Call(ctx, http.MethodPost, "/tokens/imports", body, http.StatusAccepted)
	var job importRecord
	if err == nil {
		err = json.Unmarshal(out, &job)
	}
	return followImport(ctx, b.client, progress, importFollow{phase: PhaseImport, unit: "items", what: "payment methods"}, start, job, err)
}

// importFollow names what followImport reports: the phase, the unit of
// its progress line, and what failed items are.
type importFollow struct{ phase, unit, what string }

// followImport polls the import job (created at start; err is the
// creation's error) until it ends, drawing its progress, and returns the
// phase's result: each imported item a request; each failed one, and a job
// that does not finish, an error.
func followImport(ctx context.Context, client *e2e.Client, progress io.Writer, f importFollow, start time.Time, job importRecord, err error) e2e.Result {
	var res e2e.Result
	lastDraw := time.Time{}
	for err == nil && job.Status != "finished" && job.Status != "failed" && job.Status != "aborted" {
		if time.Since(lastDraw) >= 250*time.Millisecond {
			lastDraw = time.Now()
			fmt.Fprintf(progress, "\r%-16s %9d of %d %s %9.0f %s/s %6d errors", f.phase,
				job.Counts.Successes, job.Counts.Total, f.unit, float64(job.Counts.Successes)/time.Since(start).Seconds(), f.unit, job.Counts.Failures)
		}
		if time.Since(start) > importTimeout {
			err = fmt.Errorf("%s did not end within %s", f.phase, importTimeout)
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(25 * time.Millisecond):
			var out []byte
			if out, err = client.Call(ctx, http.MethodGet, "/tokens/imports/"+job.ID, nil, http.StatusOK); err == nil {
				err = json.Unmarshal(out, &job)
			}
		}
	}
	res.Elapsed = time.Since(start)
	res.Requests, res.Errors = job.Counts.Successes, job.Counts.Failures
	fmt.Fprintf(progress, "\r%-16s %9d of %d %s %9.0f %s/s %6d errors\n", f.phase,
		res.Requests, job.Counts.Total, f.unit, float64(res.Requests)/res.Elapsed.Seconds(), f.unit, res.Errors)
	switch {
	case err != nil:
		res.Errors++
		res.FirstErr = err
	case job.Status != "finished":
		res.Errors++
		reason := ""
		if job.FailureReason != nil {
			reason = ": " + *job.FailureReason
		}
		res.FirstErr = fmt.Errorf("%s %s%s", f.phase, job.Status, reason)
	case job.Counts.Failures > 0:
		res.FirstErr = fmt.Errorf("%d %s failed to import; GET /tokens/imports/%s/items?status=failed", job.Counts.Failures, f.what, job.ID)
	}
	return res
}

// cpuProfile saves a CPU profile of the vault over most of a phase.
func (b *benchRun) cpuProfile(ctx context.Context, phase string) {
	secs := max(1, int(b.o.Duration.Seconds())-1)
	b.saveProfile(ctx, "profile?seconds="+strconv.Itoa(secs), phase+".cpu.pprof")
}

// saveProfile fetches /debug/pprof/<what> from the vault into file in Out.
// Failures are reported on stderr: a profile is a diagnostic, not a result.
func (b *benchRun) saveProfile(ctx context.Context, what, file string) {
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.env.debugAddr+"/debug/pprof/"+what, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(b.o.Out, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nbench: profile %s: %v\n", file, err)
	}
}
