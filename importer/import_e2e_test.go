package importer_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
	"github.com/cardvault/cardvault/webhook"
)

// receiver is a webhook endpoint on loopback that keeps what it got.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies, r.sigs = append(r.bodies, b), append(r.sigs, req.Header.Get("Vault-Signature"))
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// await returns the first event of type typ, polling until within.
func (r *receiver) await(t *testing.T, typ string, within time.Duration) ([]byte, string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for i, b := range r.bodies {
			var ev struct{ Type string }
			if json.Unmarshal(b, &ev) == nil && ev.Type == typ {
				r.mu.Unlock()
				return b, r.sigs[i]
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // polling an external state with a deadline
	}
	t.Fatalf("no %s event within %s", typ, within)
	return nil, ""
}

func TestImportCopiesEveryCardOfTheAccount(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 200, PaymentMethods: 2000, LinkEvery: 97, Seed: 1})
	hook := newReceiver(t)
	_, secret, err := w.svc.SetWebhook(context.Background(), w.actor, hook.URL)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go webhook.NewDeliverer(w.svc, webhook.NewClient(5*time.Second, true), nil, "hooks",
		webhook.WithPoll(20*time.Millisecond)).Run(ctx)
	w.runner("r1", nil)

	job := w.start()
	require.Regexp(t, `^sk_test_…[0-9A-Za-z]{4}$`, job.Stripe.APIKey, "the key shows only its last four")
	got := w.await(job.ID, 2*time.Minute)

	links := int64(2000 / 97)
	require.Equal(t, "finished", got.Status)
	require.Equal(t, int64(2000), got.Counts.Total)
	require.Equal(t, links, got.Counts.Skipped)
	require.Equal(t, 2000-links, got.Counts.Successes)
	require.Zero(t, got.Counts.Failures)
	w.requireExactlyImported()

	body, sig := hook.await(t, "import.finished", 30*time.Second)
	require.NoError(t, webhook.Verify(sig, body, secret, 5*time.Minute, time.Now()))
	var ev struct {
		ID   string
		Data importRecord
	}
	require.NoError(t, json.Unmarshal(body, &ev))
	require.Equal(t, job.ID, ev.Data.ID)
	require.Equal(t, got.Counts, ev.Data.Counts)
	require.NotContains(t, string(body), stripeKey)
}

// TestImportListsEveryPageOfACustomersPaymentMethods: a customer holding
// more payment methods than one list page (100) has all of them imported,
// the wallet card and Link ones skipped, through the importer's own paging.
func TestImportListsEveryPageOfACustomersPaymentMethods(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 1, PaymentMethods: 250, LinkEvery: 60, Seed: 11})
	w.runner("r1", nil)

	got := w.await(w.start().ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.Equal(t, int64(250), got.Counts.Total, "every page listed")
	require.Equal(t, int64(250/60), got.Counts.Skipped, "the Link payment methods")
	require.Equal(t, int64(250-250/60), got.Counts.Successes)
	w.requireExactlyImported()
}

func TestImportFinishesThroughRateLimitsServerErrorsAndExpiredCVCs(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 30, PaymentMethods: 300, Seed: 2})
	w.sim.SetFaults(stripesim.Faults{RateLimitEvery: 9, RateLimitBurst: 4, ServerErrorEvery: 13, ExpiredCVC: true})
	w.runner("r1", func(c *importer.Config) { c.MaxAttempts = 10 })

	got := w.await(w.start().ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.Zero(t, got.Counts.Failures, "no failure left")
	require.Equal(t, int64(300), got.Counts.Successes)
	require.Greater(t, got.Counts.Attempts, got.Counts.Successes, "some forwards were retried")
	stats := w.sim.Stats()
	require.Positive(t, stats.RateLimited)
	require.Positive(t, stats.ServerErrors)
	w.requireExactlyImported()
}

func TestImportResumesAfterTheProcessStopsWithoutDuplicates(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 40, PaymentMethods: 400, Seed: 3})
	stop := w.runner("first", func(c *importer.Config) { c.Concurrency = 2 })
	job := w.start()
	w.awaitSuccesses(job.ID, 100)
	stop() // mid-run: the first process goes away

	w.runner("second", nil)
	got := w.await(job.ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.Equal(t, int64(400), got.Counts.Successes)
	w.requireExactlyImported()
}

func TestImportRerunOnTheSameAccountCreatesNoDuplicates(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 10, PaymentMethods: 50, Seed: 4})
	w.runner("r1", nil)
	require.Equal(t, "finished", w.await(w.start().ID, time.Minute).Status)
	again := w.await(w.start().ID, time.Minute)
	require.Equal(t, "finished", again.Status)
	require.Equal(t, int64(50), again.Counts.Successes)
	w.requireExactlyImported()
}

func TestTwoReplicasForwardEachItemOnce(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 30, PaymentMethods: 300, Seed: 5})
	w.runner("replica-a", nil)
	w.runner("replica-b", nil)

	got := w.await(w.start().ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.Equal(t, int64(300), got.Counts.Attempts, "one attempt per item")
	for pm, n := range w.sim.Stats().ForwardsByPM {
		require.Equal(t, 1, n, "forwards of %s", pm)
	}
	w.requireExactlyImported()
}

// TestAJobsStripeRateHoldsAcrossReplicas: two replicas working on one job
// together send to Stripe no faster than the job's rate, the listing's
// calls and the forwards alike (each replica spacing its own requests
// would send up to twice as fast).
func TestAJobsStripeRateHoldsAcrossReplicas(t *testing.T) {
	const rate = 20.0
	w := newWorld(t, stripesim.SeedSpec{Customers: 4, PaymentMethods: 40, Seed: 12})
	atRate := func(c *importer.Config) { c.Rate = rate }
	w.runner("replica-a", atRate)
	w.runner("replica-b", atRate)

	got := w.await(w.start().ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	n, spread := w.stripeAt.spread()
	require.Greater(t, n, 40, "the listing's calls and a forward per payment method")
	least := time.Duration(float64(n-1) / rate * 0.9 * float64(time.Second))
	require.GreaterOrEqual(t, spread, least, "%d requests at %g a second arrived within %s", n, rate, spread)
	w.requireExactlyImported()
}

func TestForwardersKeepTheirConnectionsToStripeAndSendNoTelemetry(t *testing.T) {
	const concurrency = 8
	w := newWorld(t, stripesim.SeedSpec{Customers: 30, PaymentMethods: 300, Seed: 9})
	w.runner("r1", func(c *importer.Config) { c.Concurrency = concurrency })

	got := w.await(w.start().ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.LessOrEqual(t, w.stripeConns.Load(), int64(concurrency+4),
		"connections to Stripe for 300 forwards and the listing")
	require.Zero(t, w.stripeTelemetry.Load(), "requests with client telemetry")
}

func TestInvalidStripeKeyFailsTheJobWithAClearReason(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 2, PaymentMethods: 4, Seed: 6})
	w.runner("r1", nil)
	var rec importRecord
	require.Equal(t, http.StatusAccepted, w.do(http.MethodPost, "/tokens/imports",
		map[string]any{"provider": "stripe", "stripe": map[string]string{"api_key": "sk_test_notTheAccountsKey42"}}, &rec))

	got := w.await(rec.ID, 30*time.Second)

	require.Equal(t, "failed", got.Status)
	require.NotNil(t, got.FailureReason)
	require.Contains(t, *got.FailureReason, "Stripe rejected the API key")
	require.NotContains(t, *got.FailureReason, "notTheAccountsKey")
	w.requireCredentialsWiped(rec.ID)
}

func TestAbortStopsPromptly(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 20, PaymentMethods: 400, Seed: 7})
	w.sim.SetFaults(stripesim.Faults{Delay: 10 * time.Millisecond})
	const concurrency = 4
	stop := w.runner("r1", func(c *importer.Config) { c.Concurrency = concurrency })
	job := w.start()
	w.awaitSuccesses(job.ID, 20)

	var rec importRecord
	require.Equal(t, http.StatusOK, w.do(http.MethodPost, "/tokens/imports/"+job.ID.String()+"/abort", nil, &rec))
	forwardsAtAbort := w.sim.Stats().Forwards
	stop()

	require.Equal(t, "aborted", rec.Status)
	require.LessOrEqual(t, w.sim.Stats().Forwards, forwardsAtAbort+concurrency, "only forwards already in flight finish")
	require.Equal(t, http.StatusConflict, w.do(http.MethodPost, "/tokens/imports/"+job.ID.String()+"/abort", nil, nil))
	w.requireCredentialsWiped(job.ID)
}

func TestLedgerReportsEveryGivenUpPaymentMethod(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 3, PaymentMethods: 12, LinkEvery: 4, Seed: 8})
	w.sim.SetFaults(stripesim.Faults{DestinationDown: true})
	w.runner("r1", func(c *importer.Config) { c.MaxAttempts = 2 })

	got := w.await(w.start().ID, 30*time.Second)

	require.Equal(t, "finished", got.Status)
	require.Equal(t, int64(9), got.Counts.Failures)
	require.Equal(t, int64(3), got.Counts.Skipped)
	var page struct {
		Data []struct {
			PaymentMethod string  `json:"payment_method"`
			Status        string  `json:"status"`
			Attempts      int     `json:"attempts"`
			LastError     *string `json:"last_error"`
		} `json:"data"`
	}
	require.Equal(t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports/"+got.ID.String()+"/items?status=failed&limit=100", nil, &page))
	require.Len(t, page.Data, 9)
	for _, it := range page.Data {
		require.Equal(t, "failed", it.Status)
		require.Equal(t, 2, it.Attempts)
		require.NotNil(t, it.LastError)
		require.Contains(t, *it.LastError, "gave up after 2 attempts")
		require.False(t, card.ContainsPAN(*it.LastError))
	}
	require.Equal(t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports/"+got.ID.String()+"/items?status=skipped", nil, &page))
	require.Len(t, page.Data, 3)
}

func TestOnlyOneActiveImportPerTenant(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 1, PaymentMethods: 1, Seed: 9})
	first := w.start() // no runner: it stays preparing
	var e struct {
		Error struct{ Code, Message string }
	}
	status := w.do(http.MethodPost, "/tokens/imports",
		map[string]any{"provider": "stripe", "stripe": map[string]string{"api_key": stripeKey}}, &e)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "import_in_progress", e.Error.Code)
	require.Contains(t, e.Error.Message, first.ID.String())
}

func TestStripeKeyNeverLeavesTheVault(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 5, PaymentMethods: 20, Seed: 10})
	w.runner("r1", nil)
	job := w.start()
	var listed struct{ Data []importRecord }
	require.Equal(t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports", nil, &listed))
	require.Len(t, listed.Data, 1)
	require.NotContains(t, listed.Data[0].Stripe.APIKey, stripeKey[8:len(stripeKey)-4])
	require.Equal(t, "finished", w.await(job.ID, time.Minute).Status)

	w.requireCredentialsWiped(job.ID)
	pool := w.pool()
	var audit string
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(detail::text, ' '), '') FROM audit_events WHERE tenant_id = $1`, w.tenant).Scan(&audit))
	require.Contains(t, audit, job.ID.String())
	require.NotContains(t, audit, stripeKey)
	w.logMu.Lock()
	defer w.logMu.Unlock()
	require.NotContains(t, w.log.String(), stripeKey)
	require.NotContains(t, w.log.String(), "cvk_", "the job's vault key is not logged")
}

func TestForwardParamsFollowTheGuide(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join(vaulttest.RepoRoot(t), "testdata", "stripe", "forward_body_template.json"))
	require.NoError(t, err)
	want := strings.Replace(strings.TrimSpace(string(golden)), "STRIPE_PAYMENT_METHOD_ID", "pm_123", 1)
	require.JSONEq(t, want, importer.ForwardBody("pm_123"))

	first := importer.ForwardParams(uuid.UUID{1}, "pm_123", "https://vault.example/cde-import", card.NewSecret("cvk_x"), 1)
	second := importer.ForwardParams(uuid.UUID{1}, "pm_123", "https://vault.example/cde-import", card.NewSecret("cvk_x"), 2)
	require.NotEqual(t, *first.IdempotencyKey, *second.IdempotencyKey, "a fresh idempotency key per attempt")
	require.Equal(t, []string{"card_number", "card_expiry", "card_cvc", "cardholder_name"}, derefAll(first.Replacements))
	require.Equal(t, "X-API-Key", *first.Request.Headers[0].Name)
}

func derefAll(ss []*string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = *s
	}
	return out
}

// awaitSuccesses polls until the job has at least n successes.
func (w *world) awaitSuccesses(id uuid.UUID, n int64) {
	w.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var rec importRecord
		w.do(http.MethodGet, "/tokens/imports/"+id.String(), nil, &rec)
		if rec.Counts.Successes >= n {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling an external state with a deadline
	}
	w.t.Fatalf("import never reached %d successes", n)
}

// requireCredentialsWiped checks the ended job holds no credential and its
// own API key is revoked.
func (w *world) requireCredentialsWiped(id uuid.UUID) {
	w.t.Helper()
	var provider, forward []byte
	var revoked bool
	require.NoError(w.t, w.pool().QueryRow(context.Background(), `
		SELECT j.provider_key_ct, j.forward_key_ct, k.revoked_at IS NOT NULL
		FROM import_jobs j JOIN api_keys k ON k.id = j.forward_key_id WHERE j.id = $1`, id.String()).
		Scan(&provider, &forward, &revoked))
	require.Nil(w.t, provider)
	require.Nil(w.t, forward)
	require.True(w.t, revoked, "the job's API key is revoked")
}

func (w *world) pool() *pgxpool.Pool {
	w.t.Helper()
	p, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(w.t, err)
	w.t.Cleanup(p.Close)
	return p
}

// TestImportFinishesWithoutWaitingForAPoll: with a poll far longer than
// the test, a job is still prepared, forwarded and finished: the runner
// wakes its forwarders as the listing finds items and when it ends, and the
// completion loop as items end with nothing left to claim.
func TestImportFinishesWithoutWaitingForAPoll(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 60, PaymentMethods: 240, Seed: 8})
	job := w.start()
	w.runner("patient", func(c *importer.Config) { c.Poll = time.Hour })

	got := w.await(job.ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	w.requireExactlyImported()
}

func TestAnAbortedImportForwardsNothingMoreAndRecordsNoFailureForItsRevokedKey(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 20, PaymentMethods: 400, Seed: 9})
	w.sim.SetFaults(stripesim.Faults{Delay: 20 * time.Millisecond})
	const concurrency = 4
	stop := w.runner("r1", func(c *importer.Config) { c.Concurrency = concurrency })
	job := w.start()
	w.awaitSuccesses(job.ID, 20)

	require.Equal(t, http.StatusOK, w.do(http.MethodPost, "/tokens/imports/"+job.ID.String()+"/abort", nil, nil))
	forwardsAtAbort := w.sim.Stats().Forwards
	// The runner goes on: the forwards in flight come back (on the revoked
	// key) and the items it had claimed are handed back, not forwarded.
	require.Eventually(t, func() bool {
		var leased int
		err := w.pool().QueryRow(context.Background(), `SELECT count(*) FROM import_items WHERE job_id = $1 AND lease_owner IS NOT NULL`,
			job.ID).Scan(&leased)
		return err == nil && leased == 0
	}, 30*time.Second, 10*time.Millisecond)
	stop()
	require.LessOrEqual(t, w.sim.Stats().Forwards, forwardsAtAbort+concurrency, "claimed items are not forwarded once the job is aborted")

	var failed, refused int64
	require.NoError(t, w.pool().QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'failed'),
		count(*) FILTER (WHERE last_error LIKE 'destination 401%') FROM import_items WHERE job_id = $1`, job.ID).Scan(&failed, &refused))
	require.Zero(t, refused, "no item failed on the job's revoked key")
	var rec importRecord
	require.Equal(t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports/"+job.ID.String(), nil, &rec))
	require.Equal(t, rec.Counts.Failures, failed, "the ledger agrees with the counters")
}

func TestAReplicaThatDidNotFinishAJobDropsItsStripeKey(t *testing.T) {
	w := newWorld(t, stripesim.SeedSpec{Customers: 10, PaymentMethods: 200, Seed: 11})
	r1, _ := w.runnerWith("r1", nil)
	r2, _ := w.runnerWith("r2", nil)
	job := w.start()
	require.Equal(t, "finished", w.await(job.ID, time.Minute).Status)
	require.Eventually(t, func() bool { return len(r1.CachedJobs()) == 0 && len(r2.CachedJobs()) == 0 },
		10*time.Second, 10*time.Millisecond, "both replicas drop the finished job's decrypted key, whichever finished it")
}
