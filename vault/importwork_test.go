package vault_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/vaulttest"
)

// importJob inserts a job of a new tenant in status with n pending items
// pm_<prefix>_<i>, due at e's clock plus i seconds, and returns its id. The
// job is ended when the test ends, so that later tests' claims (which take
// any tenant's items) do not see its items.
func (e *env) importJob(t *testing.T, status vault.ImportStatus, prefix string, n int) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id, now := uuid.New(), e.clock.Now()
	tenant, _ := vaulttest.Tenant(t, e.svc) // one active job per tenant
	_, err := e.pool.Exec(ctx, `INSERT INTO import_jobs (id, tenant_id, provider, status, total, created_at, updated_at)
		VALUES ($1, $2, 'stripe', $3, $4, $5, $5)`, id, tenant, string(status), n, now)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := e.pool.Exec(context.Background(), `UPDATE import_jobs SET status = 'aborted' WHERE id = $1`, id)
		require.NoError(t, err)
	})
	_, err = e.pool.Exec(ctx, `INSERT INTO import_items (job_id, payment_method, status, next_attempt_at, updated_at)
		SELECT $1, 'pm_' || $2 || '_' || g, 'pending', $3::timestamptz + make_interval(secs => g), $3
		FROM generate_series(0, $4 - 1) AS g ORDER BY g`, id, prefix, now, n)
	require.NoError(t, err)
	return id
}

// pms returns the payment methods of items.
func pms(items []vault.ItemWork) []string {
	out := make([]string, len(items))
	for i, w := range items {
		out[i] = w.PaymentMethod
	}
	return out
}

func TestClaimReadsAboutTheBatchNotTheWholeJob(t *testing.T) {
	e := newEnv(t)
	e.importJob(t, vault.ImportRunning, "big", 3000)
	e.clock.Advance(time.Hour) // every item is due

	read, err := vault.ClaimRowsRead(context.Background(), e.svc, 16, e.clock.Now())

	require.NoError(t, err)
	require.LessOrEqual(t, read, 3*16, "rows of import_items read to claim 16 of 3,000 due items")
}

func TestClaimItemsLeasesTheOldestDueOfRunningJobs(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		advance time.Duration // clock move after the jobs were made
		n       int
		want    []string
	}{
		{"only what is due", 1500 * time.Millisecond, 10, []string{"pm_a_0", "pm_b_0", "pm_a_1", "pm_b_1"}},
		{"oldest due first across jobs", time.Minute, 3, []string{"pm_a_0", "pm_b_0", "pm_a_1"}},
		{"nothing due yet", -time.Second, 10, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.importJob(t, vault.ImportRunning, "a", 3)
			e.clock.Advance(time.Millisecond) // b's items come due just after a's
			e.importJob(t, vault.ImportRunning, "b", 3)
			e.importJob(t, vault.ImportPreparing, "preparing", 3)
			e.importJob(t, vault.ImportAborted, "aborted", 3)
			e.clock.Advance(tt.advance)

			got, err := e.svc.ClaimItems(ctx, "me", tt.n, time.Minute)

			require.NoError(t, err)
			require.Equal(t, tt.want, pms(got))
		})
	}
}

func TestClaimItemsSkipsLeasedItemsUntilTheirLeaseRunsOut(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.importJob(t, vault.ImportRunning, "a", 4)
	e.clock.Advance(time.Hour)
	first, err := e.svc.ClaimItems(ctx, "other", 2, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{"pm_a_0", "pm_a_1"}, pms(first))

	mine, err := e.svc.ClaimItems(ctx, "me", 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{"pm_a_2", "pm_a_3"}, pms(mine), "other's leases hold")

	e.clock.Advance(time.Minute + time.Second)
	again, err := e.svc.ClaimItems(ctx, "me", 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint([]string{"pm_a_0", "pm_a_1", "pm_a_2", "pm_a_3"}), fmt.Sprint(pms(again)),
		"every lease ran out")
}
