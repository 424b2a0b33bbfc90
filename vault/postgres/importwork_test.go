package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
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

	read, err := postgres.ClaimRowsRead(context.Background(), e.svc, 16, e.clock.Now())

	require.NoError(t, err)
	require.LessOrEqual(t, read, 3*16, "rows of import_items read to claim 16 of 3,000 due items")
}

func TestClaimItemsLeasesTheOldestDueOfActiveJobs(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		advance time.Duration // clock move after the jobs were made
		n       int
		want    []string
	}{
		{"only what is due", 1500 * time.Millisecond, 10, []string{"pm_a_0", "pm_b_0", "pm_preparing_0", "pm_a_1", "pm_b_1", "pm_preparing_1"}},
		{"oldest due first across jobs", time.Minute, 3, []string{"pm_a_0", "pm_b_0", "pm_preparing_0"}},
		{"nothing due yet", -time.Second, 10, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.importJob(t, vault.ImportRunning, "a", 3)
			e.clock.Advance(time.Millisecond) // b's items come due just after a's
			e.importJob(t, vault.ImportRunning, "b", 3)
			e.clock.Advance(time.Millisecond)
			e.importJob(t, vault.ImportPreparing, "preparing", 3) // forwarded while the listing goes on
			e.importJob(t, vault.ImportAborted, "aborted", 3)
			e.clock.Advance(tt.advance)

			got, err := e.svc.ClaimItems(ctx, "me", tt.n, time.Minute)

			require.NoError(t, err)
			require.ElementsMatch(t, tt.want, pms(got), "which items are leased (in no particular order)")
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

// itemRow is the stored state of one import item.
type itemRow struct {
	Status              string
	Attempts, Throttled int
	LastError           string
	Token               *uuid.UUID
	LeaseOwner          *string
	NextAttemptAt       time.Time
}

// TestImportRequestSlotsFollowEachOtherAtTheRate: an import job's Stripe
// request slots are reserved in its row, a preparing or running job's,
// whichever process asks; an ended job has none, and a rate that is not
// above 0 reserves nothing.
func TestImportRequestSlotsFollowEachOtherAtTheRate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, status := range []vault.ImportStatus{vault.ImportPreparing, vault.ImportRunning} {
		job := e.importJob(t, status, "slots_"+string(status), 0)
		e.checkSlotsAtTenASecond(t, func(n int) (time.Duration, error) { return e.svc.ReserveImportRequests(ctx, job, n, 10) })
		_, err := e.svc.ReserveImportRequests(ctx, job, 1, 0)
		assert.Error(t, err, "rate 0")
		_, err = e.pool.Exec(ctx, `UPDATE import_jobs SET status = 'finished' WHERE id = $1`, job)
		require.NoError(t, err)
		_, err = e.svc.ReserveImportRequests(ctx, job, 1, 10)
		assert.ErrorIs(t, err, vault.ErrImportEnded, string(status))
	}
}

func (e *env) item(t *testing.T, job uuid.UUID, pm string) itemRow {
	t.Helper()
	var r itemRow
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT status, attempts, throttled, last_error, token_id,
		lease_owner, next_attempt_at FROM import_items WHERE job_id = $1 AND payment_method = $2`, job, pm).
		Scan(&r.Status, &r.Attempts, &r.Throttled, &r.LastError, &r.Token, &r.LeaseOwner, &r.NextAttemptAt))
	return r
}

// jobCounts returns a job's attempts, successes and failures counters.
func (e *env) jobCounts(t *testing.T, job uuid.UUID) [3]int64 {
	t.Helper()
	var c [3]int64
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT attempts, successes, failures FROM import_jobs WHERE id = $1`, job).Scan(&c[0], &c[1], &c[2]))
	return c
}

func TestABatchOfAttemptsWritesEachItemAndTheJobCounters(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	job := e.importJob(t, vault.ImportRunning, "a", 5)
	e.clock.Advance(time.Hour)
	mine, err := e.svc.ClaimItems(ctx, "me", 4, time.Minute)
	require.NoError(t, err)
	require.Len(t, mine, 4)
	theirs, err := e.svc.ClaimItems(ctx, "other", 1, time.Minute)
	require.NoError(t, err)
	token := uuid.New()
	ats := []vault.Attempt{
		{Status: vault.ItemSucceeded, TokenID: token},
		{Status: vault.ItemFailed, Error: "destination 422 card_declined"},
		{Status: vault.ItemPending, Error: "destination 503 service_unavailable", RetryAfter: time.Minute},
		{Status: vault.ItemPending, Error: "stripe 429 rate_limit", RetryAfter: time.Second, Throttled: true},
		{Status: vault.ItemSucceeded, TokenID: uuid.New()}, // not leased to me
	}

	written, err := postgres.WriteAttempts(ctx, e.svc, "me", append(mine, theirs...), ats)

	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true, true, false}, written)
	now := e.clock.Now()
	tests := []struct {
		pm   string
		want itemRow
	}{
		{"pm_a_0", itemRow{Status: "succeeded", Attempts: 1, Token: &token, NextAttemptAt: now}},
		{"pm_a_1", itemRow{Status: "failed", Attempts: 1, LastError: "destination 422 card_declined", NextAttemptAt: now}},
		{"pm_a_2", itemRow{Status: "pending", Attempts: 1, LastError: "destination 503 service_unavailable",
			NextAttemptAt: now.Add(time.Minute)}},
		{"pm_a_3", itemRow{Status: "pending", Attempts: 1, Throttled: 1, LastError: "stripe 429 rate_limit",
			NextAttemptAt: now.Add(time.Second)}},
	}
	for _, tt := range tests {
		got := e.item(t, job, tt.pm)
		got.NextAttemptAt = got.NextAttemptAt.UTC()
		require.Equal(t, tt.want, got, tt.pm)
	}
	other := "other"
	require.Equal(t, itemRow{Status: "pending", LeaseOwner: &other, NextAttemptAt: now.Add(-time.Hour + 4*time.Second)},
		func() itemRow { r := e.item(t, job, "pm_a_4"); r.NextAttemptAt = r.NextAttemptAt.UTC(); return r }(),
		"another owner's item is left alone")
	require.Equal(t, [3]int64{4, 1, 1}, e.jobCounts(t, job))
}

func TestConcurrentRecordedAttemptsAreAllCounted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	const n = 40
	job := e.importJob(t, vault.ImportRunning, "a", n)
	e.clock.Advance(time.Hour)
	items, err := e.svc.ClaimItems(ctx, "me", n, time.Minute)
	require.NoError(t, err)
	require.Len(t, items, n)

	errs := make(chan error, n)
	for i, w := range items {
		at := vault.Attempt{Status: vault.ItemSucceeded, TokenID: uuid.New()}
		if i%4 == 0 {
			at = vault.Attempt{Status: vault.ItemFailed, Error: "destination 422 card_declined"}
		}
		go func() { errs <- e.svc.RecordAttempt(ctx, "me", w, at) }()
	}
	for range n {
		require.NoError(t, <-errs)
	}

	require.Equal(t, [3]int64{n, n * 3 / 4, n / 4}, e.jobCounts(t, job))
	again, err := e.svc.ClaimItems(ctx, "me", n, time.Minute)
	require.NoError(t, err)
	require.Empty(t, again, "nothing is left pending")
}

func TestRecordAttemptOnAnItemNoLongerHeldSaysTheImportEnded(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	job := e.importJob(t, vault.ImportRunning, "a", 1)
	e.clock.Advance(time.Hour)
	items, err := e.svc.ClaimItems(ctx, "me", 1, time.Minute)
	require.NoError(t, err)
	require.NoError(t, e.svc.ReleaseItem(ctx, "me", items[0]))

	err = e.svc.RecordAttempt(ctx, "me", items[0], vault.Attempt{Status: vault.ItemSucceeded, TokenID: uuid.New()})

	require.True(t, vault.IsImportEnded(err), "got %v", err)
	require.Equal(t, "pending", e.item(t, job, "pm_a_0").Status)
	require.Equal(t, [3]int64{0, 0, 0}, e.jobCounts(t, job))
}

// Concurrent ActiveImports calls share queries; each must still get the
// answer for its own jobs only, and a call made after an abort committed
// must see it.
func TestConcurrentActiveImportsEachGetTheirOwnJobs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	running := e.importJob(t, vault.ImportRunning, "r", 1)
	preparing := e.importJob(t, vault.ImportPreparing, "p", 1)
	aborted := e.importJob(t, vault.ImportAborted, "x", 1)
	unknown := uuid.New()
	asks := [][]uuid.UUID{{running}, {preparing, aborted}, {aborted}, {unknown, running}, {running, preparing, aborted, unknown}}
	want := []map[uuid.UUID]bool{{running: true}, {preparing: true}, {}, {running: true}, {running: true, preparing: true}}

	const n = 50
	got := make([]map[uuid.UUID]bool, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			got[i], err = e.svc.ActiveImports(ctx, asks[i%len(asks)])
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	for i := range n {
		require.Equal(t, want[i%len(asks)], got[i], "call %d asked %v", i, asks[i%len(asks)])
	}

	_, err := e.pool.Exec(ctx, `UPDATE import_jobs SET status = 'aborted' WHERE id = $1`, running)
	require.NoError(t, err)
	after, err := e.svc.ActiveImports(ctx, []uuid.UUID{running, preparing})
	require.NoError(t, err)
	require.Equal(t, map[uuid.UUID]bool{preparing: true}, after)
}

// Claims and forward outcomes are planned for their tables as they are
// when they run, never from a plan cached on the connection: a cached plan
// made while import_items was (or was last analysed) empty read and sorted
// every pending item of the job at each claim, and one made while
// forwarding_requests was small scanned all of it for each outcome batch.
// So the one connection that ran them holds no prepared statement of them,
// while the lookups it ran (and the import attempt batch, whose generic
// plan probes keys: TestGenericPlansProbeIndexesWhenMadeOnEmptyTables) are
// prepared.
func TestQueueStatementsAreNotRunFromCachedPlans(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	q := u.Query()
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	svc := vaulttest.NewService(t, u.String(), vaulttest.Options{Now: e.clock.Now})
	e.importJob(t, vault.ImportRunning, "cached", 20)
	e.clock.Advance(time.Hour)

	for range 8 { // past the five custom plans after which PostgreSQL may keep a generic one
		items, err := svc.ClaimItems(ctx, "me", 2, time.Minute)
		require.NoError(t, err)
		for _, w := range items {
			require.NoError(t, svc.RecordAttempt(ctx, "me", w, vault.Attempt{Status: vault.ItemSucceeded, TokenID: uuid.New()}))
		}
		_, err = svc.ClaimExportItems(ctx, "me", 2, time.Minute)
		require.NoError(t, err)
		_, err = svc.ActiveImports(ctx, []uuid.UUID{uuid.New()})
		require.NoError(t, err)
		require.NoError(t, postgres.WriteNoOutcomes(ctx, svc))
	}

	n, err := postgres.PreparedPlannedNow(ctx, svc)
	require.NoError(t, err)
	require.Zero(t, n, "claims and outcome updates prepared on the connection")
	prepared, err := postgres.PreparedStatements(ctx, svc)
	require.NoError(t, err)
	require.NotZero(t, prepared, "the connection keeps the statements it may")
}

// Renewing leases while attempts are written never deadlocks: the renewal
// skips items an attempt batch holds and updates the job row last (it
// locked the job row first, then waited for items a batch held while the
// batch waited to count on the job row).
func TestLeaseRenewalsAndAttemptBatchesDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	const n = 48
	job := e.importJob(t, vault.ImportPreparing, "renew", n)
	_, err := e.pool.Exec(ctx, `UPDATE import_jobs SET lease_owner = 'me' WHERE id = $1`, job)
	require.NoError(t, err)
	for round := range 15 {
		e.clock.Advance(time.Hour)
		items, err := e.svc.ClaimItems(ctx, "me", n, time.Minute)
		require.NoError(t, err)
		require.Len(t, items, n, "round %d", round)
		errs := make(chan error, 2*n)
		for i, w := range items {
			go func() {
				errs <- e.svc.RecordAttempt(ctx, "me", w, vault.Attempt{Status: vault.ItemPending, Error: "destination 503", RetryAfter: time.Second})
			}()
			if i%4 == 0 {
				held := slices.Clone(items)
				slices.Reverse(held)
				go func() { errs <- e.svc.RenewImportLeases(ctx, "me", held, time.Minute) }()
			}
		}
		for range n + n/4 {
			require.NoError(t, <-errs, "round %d", round)
		}
	}
}

func TestLeaseRenewalExtendsTheHeldItemsAndThePreparation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	job := e.importJob(t, vault.ImportPreparing, "extend", 3)
	_, err := e.pool.Exec(ctx, `UPDATE import_jobs SET lease_owner = 'me', lease_until = $2 WHERE id = $1`, job, e.clock.Now())
	require.NoError(t, err)
	e.clock.Advance(time.Hour)
	items, err := e.svc.ClaimItems(ctx, "me", 3, time.Minute)
	require.NoError(t, err)
	require.Len(t, items, 3)
	e.clock.Advance(30 * time.Second)

	require.NoError(t, e.svc.RenewImportLeases(ctx, "me", items[:2], 10*time.Minute))

	want := e.clock.Now().Add(10 * time.Minute)
	leaseUntil := func(sql string, args ...any) time.Time {
		var until time.Time
		require.NoError(t, e.pool.QueryRow(ctx, sql, args...).Scan(&until))
		return until
	}
	itemSQL := `SELECT lease_until FROM import_items WHERE job_id = $1 AND payment_method = $2`
	require.WithinDuration(t, want, leaseUntil(itemSQL, job, items[0].PaymentMethod), time.Millisecond)
	require.WithinDuration(t, want, leaseUntil(itemSQL, job, items[1].PaymentMethod), time.Millisecond)
	require.True(t, leaseUntil(itemSQL, job, items[2].PaymentMethod).Before(want), "an item not held keeps its lease")
	require.WithinDuration(t, want, leaseUntil(`SELECT lease_until FROM import_jobs WHERE id = $1`, job), time.Millisecond)
}

// TestLeasedItemLookupsReadOnlyTheirItems: the statements that look up a
// worker's leased items by their key (an import attempt batch, an export
// send counted and its attempt written, both lease renewals) read those
// items through the primary key also when PostgreSQL's statistics say the
// queues are empty, as they do after a VACUUM of an empty queue until
// autovacuum analyses it again. With a plain status = 'pending' test they
// probed the claim index by job instead, and read the job's whole queue
// for every item looked up.
func TestLeasedItemLookupsReadOnlyTheirItems(t *testing.T) {
	ctx := context.Background()
	url, drop, err := vaulttest.NewDatabase(ctx, "itemlookups")
	require.NoError(t, err)
	t.Cleanup(drop)
	pool := vaulttest.Pool(t, url)
	for _, table := range []string{"import_items", "export_items"} { // analysed empty, and not again meanwhile
		_, err := pool.Exec(ctx, "ALTER TABLE "+table+" SET (autovacuum_enabled = off)")
		require.NoError(t, err)
		_, err = pool.Exec(ctx, "ANALYZE "+table)
		require.NoError(t, err)
	}
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	e := &env{svc: vaulttest.NewService(t, url, vaulttest.Options{Now: clock.Now}), pool: pool, clock: clock}
	const queued = 2000
	e.importJob(t, vault.ImportRunning, "queued", queued)
	e.exportJob(t, queued)
	clock.Advance(time.Hour) // every item is due
	items, err := e.svc.ClaimItems(ctx, "me", 4, time.Minute)
	require.NoError(t, err)
	require.Len(t, items, 4)
	exports, err := e.svc.ClaimExportItems(ctx, "me", 1, time.Minute)
	require.NoError(t, err)
	require.Len(t, exports, 1)

	read, err := postgres.ItemLookupRowsRead(ctx, e.svc, "me", items, exports[0])

	require.NoError(t, err)
	require.Len(t, read, 5)
	for name, n := range read {
		assert.LessOrEqualf(t, n, 2*len(items), "%s: rows of its item table read, %d items queued", name, queued)
	}
}

// exportJob inserts a running export job of a new tenant with n pending
// items due at e's clock and returns its id.
func (e *env) exportJob(t *testing.T, n int) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id, now := uuid.New(), e.clock.Now()
	tenant, _ := vaulttest.Tenant(t, e.svc)
	_, err := e.pool.Exec(ctx, `INSERT INTO export_jobs (id, tenant_id, destination_id, url, rate_limit, status, created_at, updated_at)
		VALUES ($1, $2, 'fd_1', 'https://vault.example.test/tokens', 10, 'running', $3, $3)`, id, tenant, now)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `INSERT INTO export_items (job_id, token_id, status, next_attempt_at, updated_at)
		SELECT $1, gen_random_uuid(), 'pending', $2, $2 FROM generate_series(1, $3)`, id, now, n)
	require.NoError(t, err)
	return id
}
