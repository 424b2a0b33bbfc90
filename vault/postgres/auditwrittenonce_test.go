package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestAuditRowsAreNeverUpdated runs concurrent tokenize, read, detokenize
// and forward traffic and checks with PostgreSQL's own statistics that
// every audit row was inserted complete: the audit table saw inserts and
// not one update (a chainer linking rows after the fact updates each).
func TestAuditRowsAreNeverUpdated(t *testing.T) {
	dest := newRecorder(t, nil)
	url := auditDatabase(t)
	svc := vaulttest.NewService(t, url, vaulttest.Options{CVCTTL: time.Hour,
		Egress: vaulttest.LoopbackEgress(5*time.Second, dest.Server), AllowLoopback: true})
	pool := vaulttest.Pool(t, url)
	ctx := context.Background()
	_, secret := vaulttest.Tenant(t, svc)
	a := vaulttest.Actor(t, svc, secret)
	_, err := svc.CreateDestination(ctx, a, vault.DestinationInput{URL: dest.URL + "/cde-import", Preset: "stripe_own_vault"})
	require.NoError(t, err)

	const workers, each = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pm := fmt.Sprintf("pm_once_%d_%d", w, i)
				tok, _, err := svc.Tokenize(ctx, a, visa(pm))
				if err != nil {
					errs <- err
					continue
				}
				_, err = svc.GetToken(ctx, a, tok.ID)
				errs <- err
				_, err = svc.Forward(ctx, a, vault.ForwardInput{PaymentMethod: pm, URL: dest.URL + "/cde-import",
					Replacements: allCardFields, Body: ownVaultBody})
				errs <- err
				_, err = svc.Detokenize(ctx, a, tok.ID, "charge")
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	var rows int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&rows))
	require.Greater(t, rows, int64(workers*each*4))
	// Statistics reach the shared counters when each backend flushes them
	// (at most about ten seconds after its last transaction).
	var ins, upd int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := pool.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		require.NoError(t, err)
		require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0)::bigint, coalesce(sum(n_tup_upd), 0)::bigint
			FROM pg_stat_user_tables WHERE relname LIKE 'audit_events%'`).Scan(&ins, &upd))
		if ins >= rows || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.GreaterOrEqual(t, ins, rows, "the statistics saw every insert")
	assert.Zero(t, upd, "no audit row was updated after its insert")
	r, err := svc.VerifyAudit(ctx, nil)
	require.NoError(t, err)
	assert.True(t, r.OK, "breaks: %+v", r.Breaks)
	assert.Equal(t, rows, r.Rows)
}
