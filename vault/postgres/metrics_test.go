package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/internal/metrics/metricstest"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// metricsEnv is a service recording into its own registry, on an emptied
// package database, with a clock that starts now (webhook events take the
// database's time, so ages are measured against the real one).
type metricsEnv struct {
	svc   *postgres.Service
	reg   *prometheus.Registry
	clock *vaulttest.Clock
}

func newMetricsEnv(t *testing.T) *metricsEnv {
	t.Helper()
	pool := vaulttest.Pool(t, dbURL)
	vaulttest.Truncate(t, pool)
	kek, _ := vaulttest.KEK(t)
	e := &metricsEnv{reg: prometheus.NewRegistry(), clock: vaulttest.NewClock(time.Now().UTC())}
	svc, err := postgres.NewService(postgres.Config{Pool: pool, KEK: kek, Now: e.clock.Now,
		Logger: slog.New(slog.DiscardHandler), Metrics: metrics.NewStore(e.reg), AllowLoopback: true})
	require.NoError(t, err)
	e.svc = svc
	return e
}

// tenant returns an actor of a new tenant holding every scope, with n tokens.
func (e *metricsEnv) tenant(t *testing.T, n int) vault.Actor {
	t.Helper()
	_, secret := vaulttest.Tenant(t, e.svc)
	a := vaulttest.Actor(t, e.svc, secret)
	for i := range n {
		_, _, err := e.svc.Tokenize(context.Background(), a, vault.TokenizeInput{BusinessKey: "pm_metrics_" + strconv.Itoa(i),
			Card: card.CardInput{Number: vaulttest.LuhnNumber("424242", 16, i), ExpMonth: "04", ExpYear: "2033", CVC: "123", Name: "John Doe"}})
		require.NoError(t, err)
	}
	return a
}

// value returns the value of series (histograms: their _count) in the
// registry's exposition.
func (e *metricsEnv) value(t *testing.T, series string) float64 {
	t.Helper()
	return metricstest.Value(t, metricstest.Expose(t, e.reg), series)
}

func TestMetricsStateAddsUpEveryTenant(t *testing.T) {
	ctx := context.Background()
	e := newMetricsEnv(t)
	withHook := e.tenant(t, 0)
	_, _, err := e.svc.SetWebhook(ctx, withHook, "http://127.0.0.1:9/hooks")
	require.NoError(t, err)
	for i := range 3 {
		_, _, err := e.svc.Tokenize(ctx, withHook, visa("pm_hooked_"+strconv.Itoa(i)))
		require.NoError(t, err)
	}
	other := e.tenant(t, 2)
	_, err = e.svc.CreateImport(ctx, other, vault.CreateImportInput{Provider: vault.ProviderStripe,
		StripeAPIKey: card.NewSecret("sk_test_metricsStateImportKey")})
	require.NoError(t, err)
	e.clock.Advance(10 * time.Minute)

	st, err := e.svc.MetricsState(ctx, 365*24*time.Hour)
	require.NoError(t, err)
	assert.EqualValues(t, 2, st.Tenants)
	assert.EqualValues(t, 3, st.OutboxPending, "one token.created event per token of the tenant with a webhook")
	assert.InDelta(t, (10 * time.Minute).Seconds(), st.OutboxOldest.Seconds(), 60)
	assert.Zero(t, st.AuditUnchained, "audit rows are chained when they are written")
	assert.Zero(t, st.AuditOldestUnchained)
	assert.Equal(t, map[string]int64{"preparing": 1}, st.ImportJobs)
	assert.Equal(t, map[string]int64{}, st.KeyJobs)
	assert.InDelta(t, (10 * time.Minute).Seconds(), st.DataKeyMaxAge.Seconds(), 60, "both tenants' first data keys are ten minutes old")
	assert.Zero(t, st.DataKeysOverdue)
	assert.Zero(t, st.MismatchedTenants)

	overdue, err := e.svc.MetricsState(ctx, 5*time.Minute)
	require.NoError(t, err)
	assert.EqualValues(t, 2, overdue.DataKeysOverdue, "with a five-minute cryptoperiod both data keys are overdue")
}

func TestReencryptionProgressIsInTheStateAndTheCounter(t *testing.T) {
	ctx := context.Background()
	e := newMetricsEnv(t)
	a := e.tenant(t, 4)
	_, err := e.svc.RotateDataKey(ctx, a, 0)
	require.NoError(t, err)
	_, _, err = e.svc.StartReencrypt(ctx, a)
	require.NoError(t, err)

	st, err := e.svc.MetricsState(ctx, 365*24*time.Hour)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"pending": 1}, st.KeyJobs)
	assert.EqualValues(t, 4, st.ReencryptTotal)
	assert.Zero(t, st.ReencryptDone)

	ran, err := e.svc.RunOneKeyJob(ctx, "metrics-test", uuid.Nil)
	require.NoError(t, err)
	require.True(t, ran)
	st, err = e.svc.MetricsState(ctx, 365*24*time.Hour)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"finished": 1}, st.KeyJobs)
	assert.Zero(t, st.ReencryptTotal, "a finished job is no longer under way")
	assert.Equal(t, 4.0, e.value(t, "cardvault_reencrypted_tokens_total"))
}

func TestTheStoreRecordsBatchesTheKeyCacheAndTheRootKEK(t *testing.T) {
	ctx := context.Background()
	e := newMetricsEnv(t)
	a := e.tenant(t, 3)
	tok, _, err := e.svc.Tokenize(ctx, a, visa("pm_read_me"))
	require.NoError(t, err)
	_, err = e.svc.GetToken(ctx, a, tok.ID)
	require.NoError(t, err)
	_, err = e.svc.Detokenize(ctx, a, tok.ID, "metrics test")
	require.NoError(t, err)

	assert.Equal(t, 4.0, e.value(t, `cardvault_group_commit_batch_size_count{batch="token_create"}`), "four tokenize requests, one batch each")
	assert.Equal(t, 1.0, e.value(t, `cardvault_group_commit_batch_size_count{batch="token_read"}`))
	assert.Equal(t, 1.0, e.value(t, `cardvault_group_commit_batch_size_count{batch="token_reveal"}`))
	assert.Positive(t, e.value(t, `cardvault_tenant_key_cache_lookups_total{result="hit"}`))
	assert.Positive(t, e.value(t, `cardvault_tenant_key_cache_lookups_total{result="miss"}`), "the first use of a tenant's keys loads them")
	assert.Positive(t, e.value(t, `cardvault_root_kek_calls_total{op="decrypt",outcome="ok"}`), "loading the keys unwraps them")
	assert.Positive(t, e.value(t, `cardvault_root_kek_calls_total{op="encrypt",outcome="ok"}`), "a new tenant's keysets are wrapped")
	assert.Equal(t, 1.0, e.value(t, "cardvault_root_kek_up"))

	e.clock.Advance(2 * time.Hour) // every CVC expires
	purged, err := e.svc.PurgeExpiredCVCs(ctx)
	require.NoError(t, err)
	assert.Equal(t, float64(purged), e.value(t, "cardvault_cvcs_purged_total"))
	assert.Equal(t, 1.0, e.value(t, `cardvault_cvc_sweeps_total{outcome="ok"}`))
	assert.EqualValues(t, 3, purged, "the three CVCs never revealed")
}

func TestAKEKThatCannotOpenAKeysetIsAMismatchNotAnOutage(t *testing.T) {
	ctx := context.Background()
	e := newMetricsEnv(t)
	a := e.tenant(t, 1)
	wrongKEK, _ := vaulttest.KEK(t)
	reg := prometheus.NewRegistry()
	wrong, err := postgres.NewService(postgres.Config{Pool: vaulttest.Pool(t, dbURL), KEK: wrongKEK,
		Logger: slog.New(slog.DiscardHandler), Metrics: metrics.NewStore(reg)})
	require.NoError(t, err)

	_, err = wrong.GetToken(ctx, a, uuid.New())
	require.Equal(t, vault.CodeKEKMismatch, errorCode(err))
	st, err := wrong.MetricsState(ctx, 365*24*time.Hour)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.MismatchedTenants)
	assert.Equal(t, 1.0, metricstest.Value(t, metricstest.Expose(t, reg), "cardvault_root_kek_up"), "the KEK answers: it is up, but the wrong one")

	down := vaulttest.NewSwitchableKEK(t)
	reg = prometheus.NewRegistry()
	outage, err := postgres.NewService(postgres.Config{Pool: vaulttest.Pool(t, dbURL), KEK: down,
		Logger: slog.New(slog.DiscardHandler), Metrics: metrics.NewStore(reg)})
	require.NoError(t, err)
	down.Down.Store(true)
	_, err = outage.GetToken(ctx, a, uuid.New())
	require.Equal(t, vault.CodeKEKUnavailable, errorCode(err))
	assert.Equal(t, 0.0, metricstest.Value(t, metricstest.Expose(t, reg), "cardvault_root_kek_up"))
}

// errorCode returns the code of a domain error, "" for another.
func errorCode(err error) string {
	var e *vault.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
