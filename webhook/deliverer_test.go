package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
	"github.com/cardvault/cardvault/webhook"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "webhook", &dbURL) }

// env is a vault on emptied tables (the outbox is shared by all tenants)
// with a settable clock, and a tenant's actor.
type env struct {
	svc   *postgres.Service
	pool  *pgxpool.Pool
	clock *vaulttest.Clock
	actor vault.Actor
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := vaulttest.Pool(t, dbURL)
	vaulttest.Truncate(t, pool)
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: clock.Now})
	_, secret := vaulttest.Tenant(t, svc)
	return &env{svc: svc, pool: pool, clock: clock, actor: vaulttest.Actor(t, svc, secret)}
}

// deliverer returns a deliverer of e's vault with a short client timeout.
func (e *env) deliverer(opts ...webhook.Option) *webhook.Deliverer {
	return e.delivererWithTimeout(time.Second, opts...)
}

// delivererWithTimeout returns a deliverer of e's vault whose attempts time
// out after timeout.
func (e *env) delivererWithTimeout(timeout time.Duration, opts ...webhook.Option) *webhook.Deliverer {
	return webhook.NewDeliverer(e.svc, webhook.NewClient(timeout, true), slog.New(slog.DiscardHandler), "test", opts...)
}

// setWebhook points e's tenant's webhook at u and returns its secret.
func (e *env) setWebhook(t *testing.T, u string) string {
	t.Helper()
	_, secret, err := e.svc.SetWebhook(context.Background(), e.actor, u)
	require.NoError(t, err)
	return secret
}

func (e *env) tokenize(t *testing.T, businessKey, number, month string) vault.Token {
	t.Helper()
	tok, _, err := e.svc.Tokenize(context.Background(), e.actor, vault.TokenizeInput{BusinessKey: businessKey,
		Card: card.CardInput{Number: number, ExpMonth: month, ExpYear: "2033", CVC: "123", Name: "John Doe"}})
	require.NoError(t, err)
	return tok
}

// deliverDue runs one delivery pass and returns how many attempts it made.
func deliverDue(t *testing.T, d *webhook.Deliverer) int {
	t.Helper()
	n, err := d.DeliverDue(context.Background())
	require.NoError(t, err)
	return n
}

// deliveries returns the tenant's recorded attempts, newest first.
func (e *env) deliveries(t *testing.T) []vault.WebhookDelivery {
	t.Helper()
	page, err := e.svc.ListWebhookDeliveries(context.Background(), e.actor, 100, 0)
	require.NoError(t, err)
	return page.Deliveries
}

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint on loopback that answers each request
// with status(n) (n counts from 0) and hands it to the test.
type receiver struct {
	*httptest.Server
	got chan received
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan received, 1000)}
	var mu sync.Mutex
	n := 0
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		code := status(n)
		n++
		mu.Unlock()
		r.got <- received{header: req.Header.Clone(), body: body}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func always(code int) func(int) int { return func(int) int { return code } }

// next returns the next request the receiver got, failing after 10 s.
func (r *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case got := <-r.got:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook request arrived within 10s")
		return received{}
	}
}

type envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt string          `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// digitRun is 12 or more digits in a row: a card number, masked or not, has
// none in a webhook body.
var digitRun = regexp.MustCompile(`[0-9]{12,}`)

func TestTokenEventsAreDeliveredSignedWithTheMaskedRecord(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusOK))
	secret := e.setWebhook(t, rcv.URL+"/hooks")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.deliverer(webhook.WithPoll(time.Hour)).Run(ctx) }()
	defer func() { cancel(); <-done }()

	const pan = "4242424242424242"
	created := e.tokenize(t, "pm_events", pan, "04")
	updated := e.tokenize(t, "pm_events", pan, "05")
	require.NoError(t, e.svc.DeleteToken(context.Background(), e.actor, created.ID))

	// The deliverer polls hourly: these arrive because each commit wakes it.
	want := []struct {
		typ    string
		record vault.TokenRecord
	}{{"token.created", created.Record()}, {"token.updated", updated.Record()}, {"token.deleted", updated.Record()}}
	ids := map[string]bool{}
	for _, w := range want {
		got := rcv.next(t)
		assert.Equal(t, "application/json", got.header.Get("Content-Type"))
		assert.Equal(t, "cardvault-webhooks", got.header.Get("User-Agent"))
		require.NoError(t, webhook.Verify(got.header.Get("Vault-Signature"), got.body, secret, 5*time.Minute, e.clock.Now()))
		var ev envelope
		require.NoError(t, json.Unmarshal(got.body, &ev))
		assert.Regexp(t, `^evt_[A-Z2-7]{26}$`, ev.ID)
		assert.False(t, ids[ev.ID], "each event once")
		ids[ev.ID] = true
		assert.Equal(t, w.typ, ev.Type)
		_, err := time.Parse(time.RFC3339, ev.CreatedAt)
		assert.NoError(t, err)
		record, err := json.Marshal(w.record)
		require.NoError(t, err)
		assert.JSONEq(t, string(record), string(ev.Data), "the data is the masked record the API answers")
		assert.NotContains(t, string(got.body), pan)
		assert.Empty(t, digitRun.FindAllString(string(got.body), -1), "no digit run that could be a PAN")
		assert.NotContains(t, string(got.body), `"123"`)
	}
	for _, d := range e.deliveries(t) {
		assert.Equal(t, vault.OutcomeDelivered, d.Outcome)
		assert.Equal(t, 200, d.Status)
		assert.Equal(t, rcv.URL+"/hooks", d.URL)
	}
}

func TestFailuresAreRecordedAndRetried(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	redirect := httptest.NewServer(http.RedirectHandler("https://elsewhere.example/", http.StatusFound))
	defer redirect.Close()

	for _, tc := range []struct {
		name   string
		url    string
		status int
		error  string
	}{
		{"server error", newReceiver(t, always(http.StatusInternalServerError)).URL, 500, ""},
		{"client error", newReceiver(t, always(http.StatusGone)).URL, 410, ""},
		{"redirect", redirect.URL, 302, "redirects are not followed"},
		// Without an answer every cause reads alike: the record tells a
		// tenant nothing about ports or addresses.
		{"timeout", slow.URL, 0, noAnswer},
		{"connection refused", closed, 0, noAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.setWebhook(t, tc.url)
			e.tokenize(t, "pm_fail", "4242424242424242", "04")
			d := e.deliverer()
			require.Equal(t, 1, deliverDue(t, d))
			got := e.deliveries(t)
			require.Len(t, got, 1)
			assert.Equal(t, tc.status, got[0].Status)
			assert.Equal(t, tc.error, got[0].Error)
			assert.Equal(t, vault.OutcomeRetrying, got[0].Outcome)
			assert.Equal(t, 1, got[0].Attempt)
			assert.Zero(t, deliverDue(t, d), "not due again before its backoff")
			e.clock.Advance(37 * time.Second) // 30 s + 20 % jitter, and a bit
			assert.Equal(t, 1, deliverDue(t, d), "due again after its backoff")
			assert.Equal(t, 2, e.deliveries(t)[0].Attempt)
		})
	}
}

// noAnswer is what an attempt without an HTTP answer records.
const noAnswer = "no answer: the endpoint could not be reached or did not answer in time"

func TestARetryAfterA500Delivers(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, func(n int) int { return []int{500, 200}[min(n, 1)] })
	secret := e.setWebhook(t, rcv.URL)
	e.tokenize(t, "pm_retry", "4242424242424242", "04")
	d := e.deliverer()

	require.Equal(t, 1, deliverDue(t, d))
	first := rcv.next(t)
	e.clock.Advance(2 * time.Minute)
	require.Equal(t, 1, deliverDue(t, d))
	second := rcv.next(t)
	assert.Equal(t, first.body, second.body, "a retry sends the same event")
	assert.NoError(t, webhook.Verify(second.header.Get("Vault-Signature"), second.body, secret, 5*time.Minute, e.clock.Now()))
	e.clock.Advance(time.Hour)
	assert.Zero(t, deliverDue(t, d), "a delivered event is not sent again")

	got := e.deliveries(t)
	require.Len(t, got, 2)
	assert.Equal(t, []vault.DeliveryOutcome{vault.OutcomeDelivered, vault.OutcomeRetrying}, []vault.DeliveryOutcome{got[0].Outcome, got[1].Outcome})
	assert.Equal(t, []int{200, 500}, []int{got[0].Status, got[1].Status})
	assert.Equal(t, got[0].EventID, got[1].EventID)
}

func TestAnEventIsGivenUpAfterTheRetryWindow(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusServiceUnavailable))
	e.setWebhook(t, rcv.URL)
	e.tokenize(t, "pm_giveup", "4242424242424242", "04")
	d := e.deliverer()
	start := e.clock.Now()

	attempts := 0
	for i := 0; i < 200 && (attempts == 0 || e.deliveries(t)[0].Outcome != vault.OutcomeGaveUp); i++ {
		attempts += deliverDue(t, d)
		e.clock.Advance(75 * time.Minute) // past the longest wait: an hour + 20 %
	}
	got := e.deliveries(t)
	require.Equal(t, vault.OutcomeGaveUp, got[0].Outcome)
	assert.Len(t, got, attempts)
	assert.Len(t, rcv.got, attempts, "every attempt reached the receiver")
	assert.GreaterOrEqual(t, got[0].AttemptedAt.Sub(start), 72*time.Hour, "retried for 3 days")
	assert.Less(t, got[0].AttemptedAt.Sub(start), 74*time.Hour)
	for _, r := range got[1:] {
		assert.Equal(t, vault.OutcomeRetrying, r.Outcome)
	}
	e.clock.Advance(24 * time.Hour)
	assert.Zero(t, deliverDue(t, d), "a given-up event is not sent again")

	audit, err := e.svc.ListAuditEvents(context.Background(), e.actor, 100, 0)
	require.NoError(t, err)
	var gaveUp []vault.AuditEvent
	for _, ev := range audit.Events {
		if ev.Action == vault.ActionWebhookGiveUp {
			gaveUp = append(gaveUp, ev)
		}
	}
	require.Len(t, gaveUp, 1)
	assert.Equal(t, got[0].EventID, gaveUp[0].Detail["event_id"])
}

func TestTwoDeliverersSendEachEventOnce(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusNoContent))
	e.setWebhook(t, rcv.URL)
	const events = 60
	for i := range events {
		e.tokenize(t, fmt.Sprintf("pm_two_%d", i), vaulttest.LuhnNumber("424242", 16, i), "04")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		d := e.deliverer(webhook.WithPoll(5 * time.Millisecond))
		wg.Go(func() { d.Run(ctx) })
	}
	seen := map[string]int{}
	for range events {
		var ev envelope
		require.NoError(t, json.Unmarshal(rcv.next(t).body, &ev))
		seen[ev.ID]++
	}
	require.Eventually(t, func() bool { // the last answers are being recorded
		var pending int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_events WHERE delivered_at IS NULL`).Scan(&pending)
		return err == nil && pending == 0
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	wg.Wait()
	assert.Len(t, seen, events)
	for id, n := range seen {
		assert.Equal(t, 1, n, id)
	}
	assert.Empty(t, rcv.got, "no event was sent twice")
	var rows int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries`).Scan(&rows))
	assert.Equal(t, events, rows)
}

func TestALeaseOfADeadDelivererRunsOut(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusOK))
	e.setWebhook(t, rcv.URL)
	e.tokenize(t, "pm_lease", "4242424242424242", "04")
	claimed, err := e.svc.ClaimWebhookEvents(context.Background(), "dead-replica", vault.EventClaim{Tenants: 10, PerTenant: 10}, webhook.DefaultLease)
	require.NoError(t, err)
	require.Len(t, claimed, 1)

	d := e.deliverer()
	assert.Zero(t, deliverDue(t, d), "the dead replica's lease holds")
	e.clock.Advance(webhook.DefaultLease)
	assert.Equal(t, 1, deliverDue(t, d))
	assert.Equal(t, vault.OutcomeDelivered, e.deliveries(t)[0].Outcome)
}

func TestAStoppingDelivererReleasesWhatItDidNotSend(t *testing.T) {
	e := newEnv(t)
	arrived := make(chan struct{}, 10)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // from here on the server notices the client going away
		arrived <- struct{}{}
		<-r.Context().Done() // answers only when the sender gives up
	}))
	defer slow.Close()
	e.setWebhook(t, slow.URL)
	e.tokenize(t, "pm_stop", "4242424242424242", "04")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.deliverer(webhook.WithPoll(time.Hour)).Run(ctx) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not sent")
	}
	cancel()
	<-done

	rcv := newReceiver(t, always(http.StatusOK))
	e.setWebhook(t, rcv.URL)
	assert.Equal(t, 1, deliverDue(t, e.deliverer()), "released at once, not after the lease")
	got := e.deliveries(t)
	require.Len(t, got, 1, "the interrupted send was not counted as an attempt")
	assert.Equal(t, 1, got[0].Attempt)
	assert.Equal(t, vault.OutcomeDelivered, got[0].Outcome)
}

// tarpit is a webhook endpoint that holds every request until released,
// counting those it holds.
type tarpit struct {
	*httptest.Server
	arrived chan struct{}
	release chan struct{}
}

func newTarpit(t *testing.T) *tarpit {
	t.Helper()
	tp := &tarpit{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	tp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		tp.arrived <- struct{}{}
		select {
		case <-tp.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(tp.Close)
	return tp
}

// waitArrivals waits for n requests to reach the tarpit.
func (tp *tarpit) waitArrivals(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-tp.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("a request did not reach the tarpit within 10s")
		}
	}
}

// otherTenant creates another tenant pointing its webhook at u and returns
// its actor.
func (e *env) otherTenant(t *testing.T, u string) vault.Actor {
	t.Helper()
	_, secret := vaulttest.Tenant(t, e.svc)
	a := vaulttest.Actor(t, e.svc, secret)
	_, _, err := e.svc.SetWebhook(context.Background(), a, u)
	require.NoError(t, err)
	return a
}

// tokenizeAs makes a token of a's tenant, which enqueues one event.
func (e *env) tokenizeAs(t *testing.T, a vault.Actor, businessKey string) {
	t.Helper()
	_, _, err := e.svc.Tokenize(context.Background(), a, vault.TokenizeInput{BusinessKey: businessKey,
		Card: card.CardInput{Number: "4242424242424242", ExpMonth: "04", ExpYear: "2033"}})
	require.NoError(t, err)
}

// deliverInBackground runs one DeliverDue and returns its attempt count
// on the channel.
func deliverInBackground(d *webhook.Deliverer) <-chan int {
	out := make(chan int, 1)
	go func() {
		n, _ := d.DeliverDue(context.Background())
		out <- n
	}()
	return out
}

func TestATarpitEndpointDoesNotHoldBackAnotherTenant(t *testing.T) {
	e := newEnv(t)
	tp := newTarpit(t)
	e.setWebhook(t, tp.URL)
	for i := range 20 {
		e.tokenize(t, fmt.Sprintf("pm_tarpit_%d", i), vaulttest.LuhnNumber("424242", 16, i), "04")
	}
	rcv := newReceiver(t, always(http.StatusOK))
	other := e.otherTenant(t, rcv.URL)
	e.tokenizeAs(t, other, "pm_other")

	done := deliverInBackground(e.delivererWithTimeout(time.Minute))
	tp.waitArrivals(t, 1)
	rcv.next(t) // arrives while the tarpit still holds the first tenant's event
	close(tp.release)
	select {
	case n := <-done:
		assert.Equal(t, 21, n, "every event attempted once")
	case <-time.After(30 * time.Second):
		t.Fatal("the delivery pass did not end")
	}
}

func TestAnEndpointTakesAtMostItsConcurrency(t *testing.T) {
	e := newEnv(t)
	tp := newTarpit(t)
	e.setWebhook(t, tp.URL)
	e.tokenize(t, "pm_shared_a", "4242424242424242", "04")
	b := e.otherTenant(t, tp.URL)
	e.tokenizeAs(t, b, "pm_shared_b")
	c := e.otherTenant(t, tp.URL)
	e.tokenizeAs(t, c, "pm_shared_c")
	rcv := newReceiver(t, always(http.StatusOK))
	d := e.otherTenant(t, rcv.URL)
	e.tokenizeAs(t, d, "pm_own")

	done := deliverInBackground(e.delivererWithTimeout(time.Minute, webhook.WithConcurrency(8, 2)))
	rcv.next(t) // claimed together with the three sharing the tarpit
	tp.waitArrivals(t, 2)
	var waiting int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_events
		WHERE tenant_id = $1 AND attempts = 0 AND lease_owner IS NULL`, c.TenantID).Scan(&waiting))
	assert.Equal(t, 1, waiting, "the third tenant on the endpoint waits, unleased, while two are sent to")
	close(tp.release)
	select {
	case n := <-done:
		assert.Equal(t, 4, n, "the third is sent once a place frees up")
	case <-time.After(30 * time.Second):
		t.Fatal("the delivery pass did not end")
	}
}

func TestAnEndpointThatKeepsTimingOutHasItsCircuitOpened(t *testing.T) {
	e := newEnv(t)
	var answering atomic.Bool // false: the endpoint hangs until the client gives up
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if !answering.Load() {
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	e.setWebhook(t, srv.URL)
	for i := range 5 {
		e.tokenize(t, fmt.Sprintf("pm_breaker_%d", i), vaulttest.LuhnNumber("424242", 16, i), "04")
	}
	d := e.delivererWithTimeout(100*time.Millisecond, webhook.WithBreaker(3, time.Minute))

	assert.Equal(t, 3, deliverDue(t, d), "three timeouts in a row open the circuit; the other two events wait")
	assert.Zero(t, deliverDue(t, d), "nothing goes to an open circuit")
	e.clock.Advance(time.Minute)
	assert.Equal(t, 1, deliverDue(t, d), "after the cooldown one attempt probes, times out, and the circuit opens again")
	e.clock.Advance(time.Minute)
	assert.Zero(t, deliverDue(t, d), "the second cooldown is twice as long")
	answering.Store(true)
	e.clock.Advance(time.Minute)
	assert.Equal(t, 5, deliverDue(t, d), "an answer closes the circuit and everything due goes out")
	var delivered int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_events WHERE delivered_at IS NOT NULL`).Scan(&delivered))
	assert.Equal(t, 5, delivered)
}

// v1Count returns how many v1 signatures a Vault-Signature header holds.
func v1Count(header string) int { return strings.Count(header, ",v1=") }

func TestDuringASecretRotationBothSecretsSign(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusOK))
	oldSecret := e.setWebhook(t, rcv.URL)
	_, newSecret, err := e.svc.RotateWebhookSecret(context.Background(), e.actor, time.Hour)
	require.NoError(t, err)
	require.NotEqual(t, oldSecret, newSecret)
	d := e.deliverer()

	tests := []struct {
		name      string
		advance   time.Duration
		oldSigns  bool
		signature int // v1 entries
	}{
		{"within the overlap: new first, old second", 0, true, 2},
		{"just before it closes", 59 * time.Minute, true, 2},
		{"after it: the new secret alone", 2 * time.Minute, false, 1},
	}
	for i, tt := range tests {
		e.clock.Advance(tt.advance)
		e.tokenize(t, fmt.Sprintf("pm_rotate_%d", i), vaulttest.LuhnNumber("424242", 16, i), "04")
		require.Equal(t, 1, deliverDue(t, d), tt.name)
		got := rcv.next(t)
		header := got.header.Get(webhook.SignatureHeader)
		assert.Equal(t, tt.signature, v1Count(header), "%s: %s", tt.name, header)
		assert.NoError(t, webhook.Verify(header, got.body, newSecret, webhook.DefaultTolerance, e.clock.Now()), tt.name)
		err := webhook.Verify(header, got.body, oldSecret, webhook.DefaultTolerance, e.clock.Now())
		if tt.oldSigns {
			assert.NoError(t, err, "%s: a receiver still on the old secret accepts it", tt.name)
		} else {
			assert.ErrorIs(t, err, webhook.ErrNoValidSig, tt.name)
		}
		parts := strings.SplitN(header, ",v1=", 3)
		assert.NoError(t, webhook.Verify(parts[0]+",v1="+parts[1], got.body, newSecret, webhook.DefaultTolerance, e.clock.Now()),
			"%s: the new secret's signature comes first", tt.name)
	}
}

func TestARotationWithoutOverlapSignsWithTheNewSecretOnly(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusOK))
	oldSecret := e.setWebhook(t, rcv.URL)
	_, newSecret, err := e.svc.RotateWebhookSecret(context.Background(), e.actor, 0)
	require.NoError(t, err)
	e.tokenize(t, "pm_no_overlap", "4242424242424242", "04")
	require.Equal(t, 1, deliverDue(t, e.deliverer()))
	got := rcv.next(t)
	header := got.header.Get(webhook.SignatureHeader)
	assert.Equal(t, 1, v1Count(header))
	assert.NoError(t, webhook.Verify(header, got.body, newSecret, webhook.DefaultTolerance, e.clock.Now()))
	assert.ErrorIs(t, webhook.Verify(header, got.body, oldSecret, webhook.DefaultTolerance, e.clock.Now()), webhook.ErrNoValidSig)
	_, _, err = e.svc.RotateWebhookSecret(context.Background(), e.actor, 8*24*time.Hour)
	assert.Equal(t, vault.KindInvalid, vault.ErrorKind(err), "an overlap over 7 days is refused")
}

// failingRecords is the real outbox whose first fail attempts to record
// a delivery fail as a database failing over does (unavailable).
type failingRecords struct {
	vault.WebhookOutbox
	fail atomic.Int32
}

func (f *failingRecords) RecordWebhookAttempt(ctx context.Context, owner string, ev vault.ClaimedEvent, res vault.AttemptResult) error {
	if f.fail.Add(-1) >= 0 {
		return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable, Message: "failing over"}
	}
	return f.WebhookOutbox.RecordWebhookAttempt(ctx, owner, ev, res)
}

// TestADeliveryIsRecordedOnceTheDatabaseIsBack: a delivery made while the
// database fails over is written down once it answers again, so the event
// is not sent a second time when its lease runs out.
func TestADeliveryIsRecordedOnceTheDatabaseIsBack(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusOK))
	e.setWebhook(t, rcv.URL)
	e.tokenize(t, "pm_failover", vaulttest.LuhnNumber("424242", 16, 7), "04")
	outbox := &failingRecords{WebhookOutbox: e.svc}
	outbox.fail.Store(3)
	d := webhook.NewDeliverer(outbox, webhook.NewClient(time.Second, true), slog.New(slog.DiscardHandler), "test")

	assert.Equal(t, 1, deliverDue(t, d))
	rcv.next(t)
	assert.Less(t, outbox.fail.Load(), int32(0), "the record was retried past the failures")
	var delivered, rows int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL), (SELECT count(*) FROM webhook_deliveries) FROM webhook_events`).Scan(&delivered, &rows))
	assert.Equal(t, 1, delivered, "the event is recorded as delivered")
	assert.Equal(t, 1, rows, "one delivery attempt")
	e.clock.Advance(webhook.DefaultLease + time.Minute)
	assert.Zero(t, deliverDue(t, d), "nothing left to send, even past the lease")
	assert.Empty(t, rcv.got, "the event was sent once")
}

// lostClaims is the real outbox whose first claim takes its events and
// then fails as a claim does whose answer was lost in a failover.
type lostClaims struct {
	vault.WebhookOutbox
	fail atomic.Int32
}

func (l *lostClaims) ClaimWebhookEvents(ctx context.Context, owner string, c vault.EventClaim, lease time.Duration) ([]vault.ClaimedEvent, error) {
	events, err := l.WebhookOutbox.ClaimWebhookEvents(ctx, owner, c, lease)
	if err == nil && len(events) > 0 && l.fail.Add(-1) >= 0 {
		return nil, &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeServiceUnavailable, Message: "connection lost"}
	}
	return events, err
}

// TestEventsOfAClaimWhoseAnswerWasLostGoOutAtTheNextPass: the deliverer
// claims again the events its lost claim leased to it, rather than leave
// them until the lease (5 minutes) runs out; each goes out once.
func TestEventsOfAClaimWhoseAnswerWasLostGoOutAtTheNextPass(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t, always(http.StatusOK))
	e.setWebhook(t, rcv.URL)
	const events = 3
	for i := range events {
		e.tokenize(t, fmt.Sprintf("pm_lost_%d", i), vaulttest.LuhnNumber("424242", 16, 20+i), "04")
	}
	outbox := &lostClaims{WebhookOutbox: e.svc}
	outbox.fail.Store(1)
	d := webhook.NewDeliverer(outbox, webhook.NewClient(time.Second, true), slog.New(slog.DiscardHandler), "test")

	_, err := d.DeliverDue(context.Background())
	require.Error(t, err, "the claim's answer is lost")
	assert.Equal(t, events, deliverDue(t, d), "the next pass sends them, the clock unmoved")
	for range events {
		rcv.next(t)
	}
	assert.Zero(t, deliverDue(t, d))
	assert.Empty(t, rcv.got, "each event was sent once")
}
