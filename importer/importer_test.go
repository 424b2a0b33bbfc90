package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "importer", &dbURL) }

// stripeKey is the simulated account's secret key.
const stripeKey = "sk_test_cardvaultImporterTests0001"

// world is a vault served over real HTTP on loopback, a tenant with an
// all-scope API key, and a Stripe simulator that forwards into the vault.
type world struct {
	t      *testing.T
	svc    *postgres.Service
	vault  *httptest.Server
	sim    *stripesim.Sim
	stripe *httptest.Server
	// stripeConns counts the connections the simulator accepted.
	stripeConns *atomic.Int64
	// stripeTelemetry counts the requests to the simulator that carried
	// stripe-go's client telemetry header.
	stripeTelemetry *atomic.Int64
	// stripeAt records when each request reached the simulator.
	stripeAt *arrivals
	tenant   uuid.UUID
	key      string
	actor    vault.Actor
	log      *bytes.Buffer
	logMu    *sync.Mutex
	logger   *slog.Logger
}

func newWorld(t *testing.T, spec stripesim.SeedSpec) *world {
	t.Helper()
	w := &world{t: t, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	logger := slog.New(slog.NewJSONHandler(lockedWriter{w.log, w.logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.logger = logger
	w.svc = vaulttest.NewService(t, dbURL, vaulttest.Options{Logger: logger, AllowLoopback: true}) // webhook receivers on loopback
	w.vault = httptest.NewServer(httpapi.New(w.svc, logger))
	t.Cleanup(w.vault.Close)
	w.sim = stripesim.New(stripesim.Config{APIKeys: []string{stripeKey}})
	w.sim.Seed(spec)
	w.stripeTelemetry = &atomic.Int64{}
	w.stripeAt = &arrivals{}
	w.stripe, w.stripeConns = vaulttest.CountingServer(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.stripeAt.add(time.Now())
		if r.Header.Get("X-Stripe-Client-Telemetry") != "" {
			w.stripeTelemetry.Add(1)
		}
		w.sim.ServeHTTP(rw, r)
	}))
	w.tenant, w.key = vaulttest.Tenant(t, w.svc)
	w.actor = vaulttest.Actor(t, w.svc, w.key)
	return w
}

// arrivals records when requests arrived.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) add(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at = append(a.at, at)
}

// spread returns how many requests arrived and the time from the first to
// the last.
func (a *arrivals) spread() (int, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.at) == 0 {
		return 0, 0
	}
	first, last := slices.MinFunc(a.at, time.Time.Compare), slices.MaxFunc(a.at, time.Time.Compare)
	return len(a.at), last.Sub(first)
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// runner starts an import runner named owner, stopped when the test ends
// or stop is called; stop waits for it to return.
func (w *world) runner(owner string, tune func(*importer.Config)) (stop func()) {
	w.t.Helper()
	_, stop = w.runnerWith(owner, tune)
	return stop
}

// runnerWith is runner, returning the runner too.
func (w *world) runnerWith(owner string, tune func(*importer.Config)) (*importer.Runner, func()) {
	w.t.Helper()
	cfg := importer.Config{
		Service: w.svc, Owner: owner, PublicURL: w.vault.URL, StripeAPIBase: w.stripe.URL,
		Rate: -1, Concurrency: 8, RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond,
		Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second, Logger: w.logger,
	}
	if tune != nil {
		tune(&cfg)
	}
	r, err := importer.New(cfg)
	require.NoError(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	w.t.Cleanup(stop)
	return r, stop
}

// do sends an API request with the tenant's key and decodes the answer.
func (w *world) do(method, path string, body any, out any) int {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(w.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.vault.URL+path, rd)
	require.NoError(w.t, err)
	req.Header.Set("X-API-Key", w.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	if out != nil {
		require.NoError(w.t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

// importRecord is the job as the API shows it.
type importRecord struct {
	ID            uuid.UUID `json:"id"`
	Status        string    `json:"status"`
	FailureReason *string   `json:"failure_reason"`
	Stripe        struct {
		APIKey string `json:"api_key"`
	} `json:"stripe"`
	Counts struct {
		Total, Attempts, Successes, Failures, Skipped int64
	} `json:"counts"`
}

// start creates an import job through the API.
func (w *world) start() importRecord {
	w.t.Helper()
	var rec importRecord
	status := w.do(http.MethodPost, "/tokens/imports",
		map[string]any{"provider": "stripe", "stripe": map[string]string{"api_key": stripeKey}}, &rec)
	require.Equal(w.t, http.StatusAccepted, status)
	require.Equal(w.t, "preparing", rec.Status)
	return rec
}

// await polls the job until it has ended, and returns it.
func (w *world) await(id uuid.UUID, within time.Duration) importRecord {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var rec importRecord
		require.Equal(w.t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports/"+id.String(), nil, &rec))
		if rec.Status != "preparing" && rec.Status != "running" {
			return rec
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("import %s still %s after %s: %+v", id, rec.Status, within, rec.Counts)
		}
		time.Sleep(20 * time.Millisecond) // polling an external state with a deadline
	}
}

// tokensByBusinessKey returns the tenant's tokens' business keys, counted.
func (w *world) tokensByBusinessKey() map[string]int {
	w.t.Helper()
	out := map[string]int{}
	after := ""
	for {
		var page struct {
			Data []struct {
				ID          uuid.UUID `json:"id"`
				BusinessKey string    `json:"business_key"`
			} `json:"data"`
			HasMore bool `json:"has_more"`
		}
		path := "/tokens?limit=100"
		if after != "" {
			path += "&starting_after=" + after
		}
		require.Equal(w.t, http.StatusOK, w.do(http.MethodGet, path, nil, &page))
		for _, tok := range page.Data {
			out[tok.BusinessKey]++
			after = tok.ID.String()
		}
		if !page.HasMore {
			return out
		}
	}
}

// cardPMs returns the simulator's card payment method ids.
func (w *world) cardPMs() map[string]bool {
	out := map[string]bool{}
	for _, pm := range w.sim.PaymentMethods() {
		if pm.Type == "card" {
			out[pm.ID] = true
		}
	}
	return out
}

// requireExactlyImported checks that every card payment method has exactly
// one token whose business key is its id, and that there is no other token.
func (w *world) requireExactlyImported() {
	w.t.Helper()
	got := w.tokensByBusinessKey()
	want := w.cardPMs()
	require.Len(w.t, got, len(want))
	for pm := range want {
		require.Equal(w.t, 1, got[pm], "tokens for %s", pm)
	}
}

func TestWalletCardsAreSkippedWithTheWalletNamed(t *testing.T) {
	wallet := func(typ stripe.PaymentMethodCardWalletType) *stripe.PaymentMethod {
		return &stripe.PaymentMethod{Type: stripe.PaymentMethodTypeCard, Card: &stripe.PaymentMethodCard{
			Wallet: &stripe.PaymentMethodCardWallet{Type: typ}}}
	}
	tests := []struct {
		name string
		pm   *stripe.PaymentMethod
		want string
	}{
		{"a plain card is imported", &stripe.PaymentMethod{Type: stripe.PaymentMethodTypeCard, Card: &stripe.PaymentMethodCard{}}, ""},
		{"Apple Pay", wallet(stripe.PaymentMethodCardWalletTypeApplePay), "card saved in Apple Pay (a wallet) cannot be forwarded as a card number"},
		{"Google Pay", wallet(stripe.PaymentMethodCardWalletTypeGooglePay), "card saved in Google Pay (a wallet) cannot be forwarded as a card number"},
		{"Link", wallet(stripe.PaymentMethodCardWalletTypeLink), "card saved in Link (a wallet) cannot be forwarded as a card number"},
		{"a wallet not listed", wallet("future_pay"), "card saved in future_pay (a wallet) cannot be forwarded as a card number"},
		{"a Link payment method", &stripe.PaymentMethod{Type: stripe.PaymentMethodTypeLink}, "link payment methods cannot be forwarded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listed, err := json.Marshal(tt.pm) // the payment method as a list page holds it
			require.NoError(t, err)
			got, err := importer.SkipReasonOf(listed)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
