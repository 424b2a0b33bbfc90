package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestImportStripeWaitShowsProgressToTheEnd runs the README's "Sync all
// cards from Stripe" path: serve with its import workers pointed at a
// simulated account, then `import stripe --wait` until the job ends.
func TestImportStripeWaitShowsProgressToTheEnd(t *testing.T) {
	sim, err := stripesim.Start("127.0.0.1:0", stripesim.Config{APIKeys: []string{devStripeKey}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	sim.Seed(stripesim.SeedSpec{Customers: 5, PaymentMethods: 60, LinkEvery: 20, Seed: 1})
	kek, kekURI := vaulttest.KEK(t)
	db := migratedDatabase(t)
	svc := vaulttest.NewService(t, db, vaulttest.Options{KEK: kek})
	tenant, err := svc.CreateTenant(context.Background(), "import-cli")
	require.NoError(t, err)
	cfg := config{Import: importSettings{StripeAPIBase: sim.URL(), Rate: -1, Concurrency: 4, MaxAttempts: 3}}
	startServe(t, svc, cfg)
	flags := []string{"--database-url", db, "--kek-uri", kekURI, "--tenant", tenant.ID.String()}

	out, progress, err := run(t, append([]string{"import", "stripe", "--api-key", devStripeKey, "--wait"}, flags...)...)

	require.NoError(t, err)
	require.Contains(t, progress, "finished: 57 of 60 imported, 0 failed, 3 skipped")
	require.NotContains(t, progress+out, devStripeKey)
	_, progress, err = run(t, "import", "watch", strings.TrimSpace(out), "--database-url", db, "--kek-uri", kekURI)
	require.NoError(t, err, "watching an ended job reports it")
	require.Contains(t, progress, "finished")

	_, progress, err = run(t, append([]string{"import", "stripe", "--api-key", "sk_test_notTheSimulatorsKey", "--wait"}, flags...)...)
	require.ErrorContains(t, err, "import failed: Stripe rejected the API key")
	require.Contains(t, progress, "failed")
}
