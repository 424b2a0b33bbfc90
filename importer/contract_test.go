package importer_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestForwardRequestMatchesStripesContract sends the forwarding request the
// importer builds, through stripe-go, to stripe-mock, which refuses any
// request that does not match Stripe's OpenAPI spec.
func TestForwardRequestMatchesStripesContract(t *testing.T) {
	base := vaulttest.StripeMock(t)
	sc := stripe.NewClient("sk_test_123", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(base), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	params := importer.ForwardParams(uuid.UUID{7}, "pm_1Contract", "https://vault.example/cde-import", card.NewSecret("cvk_contract"), 1)

	fr, err := sc.V1ForwardingRequests.Create(context.Background(), params)

	require.NoError(t, err, "stripe-mock refused the forwarding request")
	require.Equal(t, "forwarding.request", string(fr.Object))
}

// TestImportJobAgainstStripeMock runs a whole job against stripe-mock: the
// list calls and the forwards the importer makes must all be accepted.
// stripe-mock's canned forward answer holds no token, so items end failed
// with that reason — never with a Stripe 4xx.
func TestImportJobAgainstStripeMock(t *testing.T) {
	base := vaulttest.StripeMock(t)
	w := newWorld(t, stripesim.SeedSpec{})
	w.stripe.URL = base // point the runner at stripe-mock instead of the simulator
	w.runner("contract", func(c *importer.Config) { c.MaxAttempts = 1 })

	var rec importRecord
	require.Equal(t, http.StatusAccepted, w.do(http.MethodPost, "/tokens/imports",
		map[string]any{"provider": "stripe", "stripe": map[string]string{"api_key": "sk_test_123456789"}}, &rec))
	got := w.await(rec.ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.Positive(t, got.Counts.Total, "stripe-mock lists at least one payment method")
	var page struct {
		Data []struct {
			Status    string  `json:"status"`
			LastError *string `json:"last_error"`
		} `json:"data"`
	}
	require.Equal(t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports/"+rec.ID.String()+"/items?limit=100", nil, &page))
	for _, it := range page.Data {
		if it.LastError != nil {
			require.NotRegexp(t, `^stripe 4\d\d`, *it.LastError, "Stripe's contract refused a request")
		}
	}
}
