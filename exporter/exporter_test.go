package exporter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/exporter"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "exporter", &dbURL) }

// receiver is another vault's import endpoint as far as an export sees it:
// it counts the requests per business key and answers a token id after a
// pause, so that concurrent workers overlap.
type receiver struct {
	mu    sync.Mutex
	byKey map[string]int
	keys  map[string]string // business key → Idempotency-Key sent
	cards map[string]string // business key → number received
	at    []time.Time       // when each send arrived
}

// newReceiver returns an empty receiver.
func newReceiver() *receiver {
	return &receiver{byKey: map[string]int{}, keys: map[string]string{}, cards: map[string]string{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Card struct {
			Number string `json:"number"`
			CVC    string `json:"cvc"`
		} `json:"card"`
		Metadata map[string]string `json:"metadata"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	bk := body.Metadata["business_key"]
	rc.mu.Lock()
	rc.byKey[bk]++
	rc.keys[bk] = r.Header.Get("Idempotency-Key")
	rc.cards[bk] = body.Card.Number + body.Card.CVC
	rc.at = append(rc.at, time.Now())
	rc.mu.Unlock()
	time.Sleep(5 * time.Millisecond) // a receiver's work: lets sends of both workers overlap
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":%q}`, remoteIDOf(bk))
}

// remoteIDOf is the receiver's token id for business key two-NN: a UUID
// whose first digit groups read as a Luhn-valid card number (4242 4242
// 4242 4242), which the redaction of a stored answer would mask; the
// ledger must keep it whole.
func remoteIDOf(bk string) string {
	return "42424242-4242-4242-a000-0000000000" + strings.TrimPrefix(bk, "two-")
}

// TestTwoWorkersOnOneJobNeverSendATokenTwice runs two runners (two
// replicas, four senders each) on one job of 60 tokens and checks that
// each token reached the receiver exactly once, without its CVC, that the
// ledger maps every token to its remote id, and that each token has one
// token.export audit row naming the job, and that one export.finished
// webhook event is queued.
func TestTwoWorkersOnOneJobNeverSendATokenTwice(t *testing.T) {
	rc, url, svc, tenant, a := exportSetup(t)
	const n = 60
	numbers := tokenizeCards(t, svc, a, n)
	_, _, err := svc.SetWebhook(context.Background(), a, "https://hooks.example.com/cardvault")
	require.NoError(t, err)
	job := createExport(t, svc, a, url, vault.MaxExportRate)
	require.EqualValues(t, n, job.Total)

	stop := runReplicas(t, svc, "replica-a", "replica-b")
	got := awaitEnd(t, svc, a, job.ID, 30*time.Second)
	stop()

	require.Equal(t, vault.ExportFinished, got.Status)
	assert.EqualValues(t, n, got.Successes)
	assert.EqualValues(t, n, got.Attempts, "one attempt per token")
	for bk, number := range numbers {
		assert.Equal(t, 1, rc.byKey[bk], "sends of %s", bk)
		assert.True(t, rc.cards[bk] == number, "%s arrived with another card or a CVC", bk) // never print card numbers
		assert.Contains(t, rc.keys[bk], job.ID.String(), "Idempotency-Key of %s", bk)
	}
	page, err := svc.ListExportItems(context.Background(), a, job.ID, "", 100, 0)
	require.NoError(t, err)
	require.Len(t, page.Items, n)
	for _, it := range page.Items {
		assert.Equal(t, vault.ItemSucceeded, it.Status)
		assert.Equal(t, remoteIDOf(it.BusinessKey), it.RemoteID)
	}
	var audited, tokens int
	require.NoError(t, vaulttest.Pool(t, dbURL).QueryRow(context.Background(), `SELECT count(*), count(DISTINCT token_id) FROM audit_events
		WHERE tenant_id = $1 AND action = 'token.export' AND detail->>'export_id' = $2`, tenant, job.ID.String()).Scan(&audited, &tokens))
	assert.Equal(t, n, audited)
	assert.Equal(t, n, tokens)
	var events int
	require.NoError(t, vaulttest.Pool(t, dbURL).QueryRow(context.Background(), `SELECT count(*) FROM webhook_events
		WHERE tenant_id = $1 AND type = 'export.finished' AND payload->>'id' = $2`, tenant, job.ID.String()).Scan(&events))
	assert.Equal(t, 1, events, "one export.finished webhook, however many replicas")
}

// TestAJobsRateHoldsAcrossReplicas: two runners (two replicas, four
// senders each) on one job of 30 tokens at 20 sends a second send them
// over at least 29 slot lengths (1.45 s; asserted with a fifth of slack for
// the first send's lateness), not at twice the rate as a limit per process
// would (about 0.73 s).
func TestAJobsRateHoldsAcrossReplicas(t *testing.T) {
	rc, url, svc, _, a := exportSetup(t)
	const n, rate = 30, 20.0
	tokenizeCards(t, svc, a, n)
	job := createExport(t, svc, a, url, rate)

	stop := runReplicas(t, svc, "replica-a", "replica-b")
	got := awaitEnd(t, svc, a, job.ID, 30*time.Second)
	stop()

	require.Equal(t, vault.ExportFinished, got.Status)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Len(t, rc.at, n)
	slices.SortFunc(rc.at, time.Time.Compare)
	spread := rc.at[n-1].Sub(rc.at[0])
	least := time.Duration(float64(n-1) / rate * 0.8 * 1e9) // 1.16 s
	assert.GreaterOrEqual(t, spread, least, "%d sends at %g a second arrived within %s", n, rate, spread)
}

// exportSetup starts a receiver (closed when the test ends) and a service
// that may forward to loopback, and returns them with a new tenant and an
// actor of it holding every scope.
func exportSetup(t *testing.T) (*receiver, string, *postgres.Service, uuid.UUID, vault.Actor) {
	t.Helper()
	rc := newReceiver()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Egress: vaulttest.LoopbackEgress(0), AllowLoopback: true})
	tenant, secret := vaulttest.Tenant(t, svc)
	return rc, srv.URL, svc, tenant, vaulttest.Actor(t, svc, secret)
}

// tokenizeCards stores n public test cards under business keys two-00,
// two-01, … and returns each key's number.
func tokenizeCards(t *testing.T, svc *postgres.Service, a vault.Actor, n int) map[string]string {
	t.Helper()
	numbers := map[string]string{}
	for i := range n {
		bk := fmt.Sprintf("two-%02d", i)
		numbers[bk] = vaulttest.LuhnNumber("424242", 16, i)
		_, _, err := svc.Tokenize(context.Background(), a, vault.TokenizeInput{BusinessKey: bk,
			Card: card.CardInput{Number: numbers[bk], ExpMonth: "12", ExpYear: "2031", CVC: "123"}})
		require.NoError(t, err)
	}
	return numbers
}

// createExport starts an export of every token of a's tenant to the
// receiver at url, at rate sends a second.
func createExport(t *testing.T, svc *postgres.Service, a vault.Actor, url string, rate float64) vault.ExportJob {
	t.Helper()
	dest, err := svc.CreateDestination(context.Background(), a, vault.DestinationInput{URL: url + "/cde-import", Preset: "stripe_own_vault"})
	require.NoError(t, err)
	job, err := svc.CreateExport(context.Background(), a, vault.CreateExportInput{DestinationID: dest.ID, RateLimit: rate})
	require.NoError(t, err)
	return job
}

// runReplicas runs a Runner per owner, as that many replicas would, and
// returns what stops them and waits for them.
func runReplicas(t *testing.T, svc *postgres.Service, owners ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, owner := range owners {
		r, err := exporter.New(exporter.Config{Service: svc, Owner: owner, Poll: 20 * time.Millisecond})
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx) }()
	}
	return func() { cancel(); wg.Wait() }
}

// awaitEnd polls the job until it ends or within passes.
func awaitEnd(t *testing.T, svc *postgres.Service, a vault.Actor, id uuid.UUID, within time.Duration) vault.ExportJob {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := svc.GetExport(context.Background(), a, id)
		require.NoError(t, err)
		if j.Ended() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("the export did not end within %s: %+v", within, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
