package exporter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/exporter"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestExportAttemptsAreCountedByOutcome runs a job of 6 tokens against a
// destination that answers the first send of each token 503 and refuses
// met-2 with 400, two attempts at most: export_items_total counts each
// token's first attempt as retried, its second as succeeded, and met-2's
// refusal as failed, with no business key, token or job id as a label.
func TestExportAttemptsAreCountedByOutcome(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Metadata map[string]string `json:"metadata"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		bk := body.Metadata["business_key"]
		mu.Lock()
		seen[bk]++
		n := seen[bk]
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case bk == "met-2":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"card_declined"}}`)
		case n == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":"busy"}}`)
		default:
			fmt.Fprintf(w, `{"id":"remote-%s"}`, bk)
		}
	}))
	defer srv.Close()
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Egress: vaulttest.LoopbackEgress(0), AllowLoopback: true})
	_, secret := vaulttest.Tenant(t, svc)
	a := vaulttest.Actor(t, svc, secret)
	const n = 6
	var ids []string
	for i := range n {
		tok, _, err := svc.Tokenize(context.Background(), a, vault.TokenizeInput{BusinessKey: fmt.Sprintf("met-%d", i),
			Card: card.CardInput{Number: vaulttest.LuhnNumber("424242", 16, 100+i), ExpMonth: "12", ExpYear: "2031"}})
		require.NoError(t, err)
		ids = append(ids, tok.ID.String())
	}
	dest, err := svc.CreateDestination(context.Background(), a, vault.DestinationInput{URL: srv.URL + "/cde-import", Preset: "stripe_own_vault"})
	require.NoError(t, err)
	job, err := svc.CreateExport(context.Background(), a, vault.CreateExportInput{DestinationID: dest.ID, RateLimit: vault.MaxExportRate})
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	r, err := exporter.New(exporter.Config{Service: svc, Owner: "metrics", Poll: 20 * time.Millisecond, MaxAttempts: 2,
		RetryBase: 10 * time.Millisecond, RetryCap: 20 * time.Millisecond, Metrics: metrics.NewExports(reg)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	got := awaitEnd(t, svc, a, job.ID, 30*time.Second)
	cancel()
	<-done // Run returns once every attempt is written, and counted

	require.Equal(t, vault.ExportFinished, got.Status)
	out := metricstest.Expose(t, reg)
	for outcome, want := range map[string]float64{"succeeded": n - 1, "retried": n - 1, "failed": 1} {
		assert.Equal(t, want, metricstest.Value(t, out, fmt.Sprintf(`cardvault_export_items_total{outcome=%q}`, outcome)), outcome)
	}
	assert.NotContains(t, string(out), "met-", "no business key is a label")
	assert.NotContains(t, string(out), job.ID.String(), "no job id is a label")
	for _, id := range ids {
		assert.NotContains(t, string(out), id, "no token id is a label")
	}
}
