package stripesim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stripe/stripe-go/v85"
)

const testKey = "sk_test_stripesimUnitTests0001"

// testSpec is a small account with a few Link payment methods and
// customers holding more than one page of payment methods.
var testSpec = SeedSpec{Customers: 23, PaymentMethods: 157, LinkEvery: 9, Seed: 42}

// newStripe returns a stripe-go v85 client for the API at url, without
// network retries or logging.
func newStripe(t testing.TB, url, key string) *stripe.Client {
	t.Helper()
	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(url),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	})
	return stripe.NewClient(key, stripe.WithBackends(backends))
}

// startSim serves a simulator seeded with spec and returns it, its URL and
// a client using testKey.
func startSim(t *testing.T, cfg Config, spec SeedSpec) (*Sim, string, *stripe.Client) {
	t.Helper()
	if cfg.APIKeys == nil {
		cfg.APIKeys = []string{testKey}
	}
	sim := New(cfg)
	sim.Seed(spec)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL, newStripe(t, srv.URL, testKey)
}

// cardPMs returns the simulator's card payment methods and Link ones.
func cardPMs(t *testing.T, sim *Sim) (cards, links []PaymentMethod) {
	t.Helper()
	for _, pm := range sim.PaymentMethods() {
		switch pm.Type {
		case "card":
			cards = append(cards, pm)
		case "link":
			links = append(links, pm)
		default:
			t.Fatalf("payment method %s has type %q", pm.ID, pm.Type)
		}
	}
	if len(cards) == 0 || len(links) == 0 {
		t.Fatalf("seed gave %d cards and %d links; want both", len(cards), len(links))
	}
	return cards, links
}

// wantStripeError fails unless err is a Stripe error with that HTTP status
// and code.
func wantStripeError(t *testing.T, err error, status int, code string) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v; want a *stripe.Error with status %d", err, status)
	}
	if se.HTTPStatusCode != status || string(se.Code) != code {
		t.Fatalf("stripe error status %d code %q (%s); want %d %q", se.HTTPStatusCode, se.Code, se.Msg, status, code)
	}
	return se
}

// bodyTemplate is the forwarding body of the reference guide, as the
// importer sends it.
func bodyTemplate(t testing.TB, pmID string) string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/stripe/forward_body_template.json")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "STRIPE_PAYMENT_METHOD_ID", pmID)
}

// fwdParams is a forwarding request for pmID to url with an X-API-Key
// header and the given replacements.
func fwdParams(t testing.TB, pmID, url string, replacements ...string) *stripe.ForwardingRequestCreateParams {
	t.Helper()
	return &stripe.ForwardingRequestCreateParams{
		PaymentMethod: stripe.String(pmID),
		URL:           stripe.String(url),
		Replacements:  stripe.StringSlice(replacements),
		Request: &stripe.ForwardingRequestCreateRequestParams{
			Body: stripe.String(bodyTemplate(t, pmID)),
			Headers: []*stripe.ForwardingRequestCreateRequestHeaderParams{
				{Name: stripe.String("X-API-Key"), Value: stripe.String("cvk_test_destination_key")},
				{Name: stripe.String("X-Trace"), Value: stripe.String("trace-1")},
			},
		},
	}
}

var allReplacements = []string{"card_number", "card_expiry", "card_cvc", "cardholder_name"}

// forwarded is the /cde-import body a destination received.
type forwarded struct {
	Metadata map[string]string `json:"metadata"`
	Card     struct {
		Number   string `json:"number"`
		ExpMonth string `json:"exp_month"`
		ExpYear  string `json:"exp_year"`
		CVC      string `json:"cvc"`
		Name     string `json:"name"`
	} `json:"card"`
}

// received is one request a destination got.
type received struct {
	header http.Header
	body   forwarded
}

// destination is a forwarding target that records what it receives and
// answers status and body (body may use {{number}} to echo the number).
type destination struct {
	URL     string
	status  int
	body    string
	arrived chan struct{} // when not nil, signalled on each request
	release chan struct{} // when not nil, each answer waits for it

	mu  sync.Mutex
	got []received
}

func newDestination(t *testing.T, status int, body string) *destination {
	t.Helper()
	d := &destination{status: status, body: body}
	srv := httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(srv.Close)
	d.URL = srv.URL + "/cde-import"
	return d
}

func (d *destination) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var f forwarded
	if err := json.Unmarshal(raw, &f); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	d.got = append(d.got, received{header: r.Header.Clone(), body: f})
	d.mu.Unlock()
	if d.arrived != nil {
		d.arrived <- struct{}{}
	}
	if d.release != nil {
		<-d.release
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Api-Key-Echo", "should-be-redacted")
	if d.status >= 300 && d.status < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(d.status)
	_, _ = io.WriteString(w, strings.ReplaceAll(d.body, "{{number}}", f.Card.Number))
}

// requests returns a copy of what the destination received.
func (d *destination) requests() []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]received(nil), d.got...)
}
