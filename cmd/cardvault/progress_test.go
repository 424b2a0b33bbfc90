package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestRateNeedsAMeaningfulInterval: a watch that first sees 16,000,256
// cards done reports no rate until a second has passed, then only what
// moved while it watched.
func TestRateNeedsAMeaningfulInterval(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		after  time.Duration
		done   int64
		want   float64
		wantOK bool
	}{
		{"first sight", 0, 16000256, 0, false},
		{"a millisecond later", time.Millisecond, 16000256, 0, false},
		{"just under a second", 999 * time.Millisecond, 16000300, 0, false},
		{"two seconds later", 2 * time.Second, 16000356, 50, true},
	}
	var m rateMeter
	for _, tt := range tests {
		got, ok := m.rate(t0.Add(tt.after), tt.done)
		assert.Equal(t, tt.wantOK, ok, tt.name)
		assert.InDelta(t, tt.want, got, 0.001, tt.name)
	}
}

// fakeClock is a progress clock the test moves.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// TestProgressWithoutATerminalPrintsALineEveryFewSeconds: a log file gets
// whole lines, not one line of carriage returns.
func TestProgressWithoutATerminalPrintsALineEveryFewSeconds(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{now: time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)}
	p := newProgress(&out, "tokens")
	p.now = clock.Now
	for done := int64(0); done <= 100; done += 10 { // one update a second
		p.update("re-encrypting", done, 200)
		clock.now = clock.now.Add(time.Second)
	}
	p.finish("re-encrypted", 200, 200)
	assert.NotContains(t, out.String(), "\r")
	assert.Equal(t, []string{
		"re-encrypting: 0 of 200 tokens (0%)",
		"re-encrypting: 50 of 200 tokens (25%), 10 tokens/s, about 15s left",
		"re-encrypting: 100 of 200 tokens (50%), 10 tokens/s, about 10s left",
		"re-encrypted: 200 of 200 tokens (100%), 18 tokens/s",
	}, strings.Split(strings.TrimSpace(out.String()), "\n"))
}

// TestWatchingAnEndedImportShowsNoRate: a job that ended before the watch
// began moved nothing while watched, so no cards/s is made up.
func TestWatchingAnEndedImportShowsNoRate(t *testing.T) {
	sim, err := stripesim.Start("127.0.0.1:0", stripesim.Config{APIKeys: []string{devStripeKey}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	sim.Seed(stripesim.SeedSpec{Customers: 2, PaymentMethods: 20, Seed: 1})
	kek, kekURI := vaulttest.KEK(t)
	db := migratedDatabase(t)
	svc := vaulttest.NewService(t, db, vaulttest.Options{KEK: kek})
	tenant, err := svc.CreateTenant(context.Background(), "watch-ended")
	require.NoError(t, err)
	sv := startServe(t, svc, config{Import: importSettings{StripeAPIBase: sim.URL(), Rate: -1, Concurrency: 4, MaxAttempts: 3}})
	flags := []string{"--database-url", db, "--kek-uri", kekURI}
	out, _, err := run(t, append([]string{"import", "stripe", "--tenant", tenant.ID.String(), "--api-key", devStripeKey, "--wait"}, flags...)...)
	require.NoError(t, err)
	require.NoError(t, sv.stop())

	_, progress, err := run(t, append([]string{"import", "watch", strings.TrimSpace(out)}, flags...)...)
	require.NoError(t, err)
	assert.Contains(t, progress, "finished  ok 20 failed 0 skipped 0: 20 of 20 cards (100%)\n")
	assert.NotContains(t, progress, "cards/s", "no rate over a near-zero interval")
	assert.NotContains(t, progress, "\r")
}
