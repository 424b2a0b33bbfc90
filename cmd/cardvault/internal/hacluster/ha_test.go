//go:build ha && linux

package hacluster_test

// The HA test: `make ha-test`, or
//
//	go test -tags ha -count=1 -v -run '^TestHA' -timeout 15m ./cmd/cardvault/internal/hacluster/
//
// starts a pg_auto_failover cluster (monitor, primary, two synchronous
// standbys), two vault replicas behind a round-robin load balancer, and
// tokenize, detokenize and import traffic; then, one after the other, a
// planned switchover, a SIGKILL of the primary's postmaster and a failing
// disk under the primary. Each time it measures the time from the fault to
// the first successful tokenize and the requests answered 503 meanwhile,
// and checks that the import finishes with each payment method
// acknowledged once; at the end, that every acknowledged token reads back
// equal, no business key has two tokens, every token has its audit row and
// its webhook event (delivered once), and `cardvault audit verify` is green.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/hacluster"
)

// fault is one way to lose the primary.
type fault struct {
	name   string
	inject func(ctx context.Context, c *hacluster.Cluster, primary *hacluster.Node) error
	repair func(c *hacluster.Cluster, primary *hacluster.Node) error // nil: pg_auto_failover heals it alone
}

var faults = []fault{
	{"planned switchover", func(ctx context.Context, c *hacluster.Cluster, _ *hacluster.Node) error {
		return c.Switchover(ctx)
	}, nil},
	{"postmaster SIGKILL", func(_ context.Context, c *hacluster.Cluster, n *hacluster.Node) error {
		_, err := c.KillPostmaster(n)
		return err
	}, nil},
	{"failing disk", func(ctx context.Context, c *hacluster.Cluster, n *hacluster.Node) error {
		return c.FailDisk(ctx, n)
	}, func(c *hacluster.Cluster, n *hacluster.Node) error { return c.RepairDisk(n) }},
}

// Traffic and import sizes: small enough for a shared 2-core machine.
const (
	tokenizers   = 4
	detokenizers = 2
	importPMs    = 300 // payment methods per import, one import per fault
	phaseTimeout = 4 * time.Minute
)

func TestHAFailover(t *testing.T) {
	h := newHarness(t)
	h.requireSynchronousCommit()
	tr := startTraffic(h.lb.URL, h.key, tokenizers, detokenizers)
	defer tr.stop()
	var results []*phaseResult
	ok := true
	for i, f := range faults {
		if ok = t.Run(f.name, func(t *testing.T) { results = append(results, h.phase(t, tr, i, f)) }); !ok {
			break // the next fault needs a healthy cluster
		}
	}
	if ok {
		t.Run("no standby left", func(t *testing.T) { results = append(results, h.noStandbyLeft(t, tr)) })
	}
	tr.stop()
	h.verifyEverything(t, tr, results)
	report(t, results)
}

// requireSynchronousCommit checks that a commit waits for a standby: the
// primary has synchronous_commit on and names its standbys in
// synchronous_standby_names, and the formation's number_sync_standbys is 1.
func (h *harness) requireSynchronousCommit() {
	ctx := context.Background()
	primary, err := h.cluster.Primary(ctx)
	require.NoError(h.t, err)
	pool := h.pool()
	var syncCommit, names string
	require.NoError(h.t, pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names')`).
		Scan(&syncCommit, &names))
	nss, err := h.cluster.NumberSyncStandbys(ctx)
	require.NoError(h.t, err)
	h.t.Logf("primary %s: synchronous_commit=%s synchronous_standby_names=%s number_sync_standbys=%d", primary.Name, syncCommit, names, nss)
	require.Equal(h.t, "on", syncCommit)
	require.Contains(h.t, names, "ANY 1 (")
	require.GreaterOrEqual(h.t, nss, 1)
}

// phaseResult is what one fault measured.
type phaseResult struct {
	name                     string
	start, faultAt, recovery time.Time // recovery: the first successful tokenize after the fault's failures
	end                      time.Time
	firstFailure             time.Time     // zero when no request failed
	failed503                int           // answers 503 between the fault and the recovery
	slowest                  time.Duration // the slowest answer to a request sent meanwhile
	oldPrimary, newPrimary   string
	acksBefore, acksDuring   int
	acksAfter                int
	lost                     int // acknowledged in this phase and not read back equal at the end
	importForwards           int // Stripe forwards of the import (retries of 503s included)
	importPMs                int
}

// phase waits for a healthy cluster, starts an import, injects f under
// the traffic, measures the recovery and checks the import.
func (h *harness) phase(t *testing.T, tr *traffic, i int, f fault) *phaseResult {
	ctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
	defer cancel()
	r := &phaseResult{name: f.name}
	_, err := h.cluster.WaitHealthy(ctx)
	require.NoError(t, err)
	primary, err := h.cluster.Primary(ctx)
	require.NoError(t, err)
	r.start, r.oldPrimary = time.Now(), primary.Name
	waitAcks(t, tr, r.start, 20, time.Minute)
	imp := h.startImport(t, i)
	imp.waitProgress(t, 30, time.Minute)

	r.faultAt = time.Now()
	require.NoError(t, f.inject(ctx, h.cluster, primary), "injecting %s into %s", f.name, primary.Name)
	t.Logf("%s of %s at %s", f.name, primary.Name, r.faultAt.Format("15:04:05.000"))
	waitRecovery(t, tr, r, 2*time.Minute)
	if f.repair != nil {
		require.NoError(t, f.repair(h.cluster, primary))
	}
	imp.requireFinishedOnce(t, r, 3*time.Minute)
	r.end = time.Now()
	if p, err := h.cluster.Primary(ctx); err == nil {
		r.newPrimary = p.Name
	}
	t.Logf("%s: first successful tokenize %s after the fault; %d answers 503 meanwhile, the slowest answer %s; primary %s → %s",
		f.name, r.recovery.Sub(r.faultAt).Round(10*time.Millisecond), r.failed503, r.slowest.Round(10*time.Millisecond), primary.Name, r.newPrimary)
	h.requirePhaseReadsBack(t, tr, r)
	return r
}

// requirePhaseReadsBack detokenizes the tokens acknowledged since the phase
// started and runs `cardvault audit verify`: each fault is checked before
// the next one.
func (h *harness) requirePhaseReadsBack(t *testing.T, tr *traffic, r *phaseResult) {
	_, acks := tr.snapshot()
	var mine []ack
	for _, k := range acks {
		if !k.done.Before(r.start) {
			mine = append(mine, k)
		}
	}
	lost := h.readBack(mine)
	assert.Empty(t, lost, "acknowledged tokens of this phase lost or changed")
	out := h.cli("audit", "verify", "--tenant", h.tenantID)
	assert.True(t, strings.HasPrefix(out, "ok:"), "audit verify: %s", out)
	t.Logf("%d tokens acknowledged since the phase started read back equal; audit verify: %s", len(mine), strings.TrimSpace(out))
}

// waitAcks waits until n tokenizations sent after since are acknowledged.
func waitAcks(t *testing.T, tr *traffic, since time.Time, n int, within time.Duration) {
	t.Helper()
	poll(t, within, fmt.Sprintf("%d acknowledged tokens", n), func() bool {
		answers, _ := tr.snapshot()
		got := 0
		for _, a := range answers {
			if a.op == "tokenize" && a.ok() && !a.sent.Before(since) {
				got++
			}
		}
		return got >= n
	})
}

// stableFor is how long tokenizes must keep succeeding after the last
// failure for the recovery to count as done.
const stableFor = 3 * time.Second

// waitRecovery waits until tokenizes have succeeded for stableFor after the
// last failure since the fault, and fills in r: the first failure, the
// recovery (the first success sent after the last failure, or after the
// fault when none failed) and the 503s in between.
func waitRecovery(t *testing.T, tr *traffic, r *phaseResult, within time.Duration) {
	t.Helper()
	poll(t, within, "tokenize to succeed again after the fault", func() bool { return recovered(tr, r) })
	answers, _ := tr.snapshot()
	for _, a := range answers {
		if a.sent.Before(r.faultAt) || a.sent.After(r.recovery) {
			continue
		}
		if a.status == http.StatusServiceUnavailable {
			r.failed503++
		}
		r.slowest = max(r.slowest, a.done.Sub(a.sent))
	}
}

// recovered reports whether tokenizes have succeeded for stableFor after
// the last failure since the fault, and fills in r: the first failure, the
// recovery (the first success sent after the last failure, or after the
// fault when none failed).
func recovered(tr *traffic, r *phaseResult) bool {
	answers, _ := tr.snapshot()
	var lastFail answer
	r.firstFailure = time.Time{}
	for _, a := range answers {
		if a.sent.Before(r.faultAt) || a.ok() {
			continue
		}
		if r.firstFailure.IsZero() || a.sent.Before(r.firstFailure) {
			r.firstFailure = a.sent
		}
		if a.op == "tokenize" && a.sent.After(lastFail.sent) {
			lastFail = a
		}
	}
	from := r.faultAt
	if !lastFail.sent.IsZero() {
		from = lastFail.sent
	}
	r.recovery = time.Time{}
	for _, a := range answers {
		if a.op == "tokenize" && a.ok() && a.sent.After(from) && (r.recovery.IsZero() || a.done.Before(r.recovery)) {
			r.recovery = a.done
		}
	}
	return !r.recovery.IsZero() && time.Since(r.recovery) >= stableFor
}

// poll calls ok every 50 ms until it reports true, failing t after within.
func poll(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond) // polling a state outside this process, with a deadline
	}
}

// report prints the measurements as the table the README and
// docs/operations.md quote.
func report(t *testing.T, results []*phaseResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| Fault | Fault → first successful tokenize | Requests answered 503 | Slowest answer meanwhile | Tokens acknowledged (before / during / after) | Lost | Import: payment methods, forwards | Primary |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.1f s | %d | %.1f s | %d / %d / %d | %d | %d, %d | %s → %s |\n", r.name, r.recovery.Sub(r.faultAt).Seconds(),
			r.failed503, r.slowest.Seconds(), r.acksBefore, r.acksDuring, r.acksAfter, r.lost, r.importPMs, r.importForwards, r.oldPrimary, r.newPrimary)
	}
	t.Log(b.String())
}

// assertNoneBut reports every item of bad, the first few in full.
func assertNone(t *testing.T, what string, bad []string) {
	t.Helper()
	assert.Empty(t, bad, "%d %s; first: %s", len(bad), what, strings.Join(bad[:min(5, len(bad))], "; "))
}
