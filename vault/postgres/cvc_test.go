package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/migrations"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// TestDestroyingACVCRewritesTheRowInItsPage: a reveal and the sweeper
// destroy a CVC without changing any indexed column of tokens, so
// PostgreSQL writes the new row version in the same page with no index
// entry (a HOT update: the old version carries HEAP_HOT_UPDATED). Before
// the expiry queue, clearing the indexed cvc_expires_at added an entry to
// every index of the table on each reveal.
func TestDestroyingACVCRewritesTheRowInItsPage(t *testing.T) {
	for _, tt := range []struct {
		name    string
		destroy func(t *testing.T, e *env, id uuid.UUID)
	}{
		{"reveal", func(t *testing.T, e *env, id uuid.UUID) {
			r, err := e.svc.Detokenize(context.Background(), e.actor, id, "")
			require.NoError(t, err)
			require.False(t, r.Card.CVC.IsZero(), "the first reveal gets the CVC")
		}},
		{"sweep", func(t *testing.T, e *env, _ uuid.UUID) {
			e.clock.Advance(time.Hour + time.Second)
			n, err := e.svc.PurgeExpiredCVCs(context.Background())
			require.NoError(t, err)
			require.GreaterOrEqual(t, n, int64(1))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tok, _ := e.tokenize(t, visa("pm_hot_"+tt.name))
			block, item := e.tokenCTID(t, tok.ID)
			tt.destroy(t, e, tok.ID)
			assert.True(t, e.cvcGone(t, tok.ID))
			assert.True(t, e.hotUpdated(t, block, item), "the old row version is HOT-updated")
		})
	}
}

// TestSweeperSkipsCVCsRevealedOrReplaced: the sweeper takes every due
// entry of the expiry queue but destroys only CVCs still stored past their
// own expiry: a revealed CVC is gone already, and a CVC replaced by a
// newer one waits for the newer one's entry.
func TestSweeperSkipsCVCsRevealedOrReplaced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	revealed, _ := e.tokenize(t, visa("pm_sweep_revealed"))
	_, err := e.svc.Detokenize(ctx, e.actor, revealed.ID, "")
	require.NoError(t, err)
	replaced, _ := e.tokenize(t, visa("pm_sweep_replaced"))
	e.clock.Advance(30 * time.Minute)
	in := visa("pm_sweep_replaced")
	in.Card = card.CardInput{Number: "5555555555554444", ExpMonth: "05", ExpYear: "2034", CVC: "456", Name: "John Doe"}
	_, created := e.tokenize(t, in)
	require.False(t, created, "the business key's token took the new card")

	e.clock.Advance(30*time.Minute + time.Second) // the first CVCs' TTL has passed, not the new one's
	untouched := e.rowVersion(t, revealed.ID)
	n, err := e.svc.PurgeExpiredCVCs(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left to destroy")
	assert.Equal(t, untouched, e.rowVersion(t, revealed.ID), "the revealed token is neither locked nor rewritten")
	assert.Equal(t, 1, e.queuedCVCs(t, revealed.ID, replaced.ID), "only the new CVC's entry is left")
	got, err := e.svc.GetToken(ctx, e.actor, replaced.ID)
	require.NoError(t, err)
	assert.True(t, got.CVCAvailable)

	e.clock.Advance(30 * time.Minute)
	n, err = e.svc.PurgeExpiredCVCs(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.True(t, e.cvcGone(t, replaced.ID))
	assert.Zero(t, e.queuedCVCs(t, revealed.ID, replaced.ID))
	var purges int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = $2`,
		e.actor.TenantID, string(vault.ActionCVCPurge)).Scan(&purges))
	assert.Equal(t, 1, purges, "one purge audited, for the batch that destroyed a CVC")
}

// TestSweeperSkipsATokenARequestHolds: the sweeper never waits for a
// token another transaction has locked (a reveal batch locks in id order;
// waiting in another order could deadlock with it): it leaves that CVC and
// its queue entry to the next pass.
func TestSweeperSkipsATokenARequestHolds(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.tokenize(t, visa("pm_sweep_held"))
	e.clock.Advance(time.Hour + time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, `SELECT FROM tokens WHERE id = $1 FOR UPDATE`, tok.ID)
	require.NoError(t, err)

	// The counts are not asserted: a pass also destroys what earlier tests
	// of this database left queued before the clock advanced past it.
	_, err = e.svc.PurgeExpiredCVCs(ctx)
	require.NoError(t, err, "the sweep does not wait for the held token")
	assert.False(t, e.cvcGone(t, tok.ID))
	assert.Equal(t, 1, e.queuedCVCs(t, tok.ID), "the held token keeps its entry")

	require.NoError(t, tx.Rollback(ctx))
	n, err := e.svc.PurgeExpiredCVCs(ctx)
	require.NoError(t, err)
	assert.Positive(t, n)
	assert.True(t, e.cvcGone(t, tok.ID))
	assert.Zero(t, e.queuedCVCs(t, tok.ID))
}

// TestCVCExpiryQueueMigrationQueuesStoredCVCs: migration 024 queues the
// expiry of every CVC stored before it, and of no token without one.
func TestCVCExpiryQueueMigrationQueuesStoredCVCs(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, emptyDatabase(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, migrations.MigrateTo(ctx, conn, 23))
	tenant, withCVC, without := uuid.New(), uuid.New(), uuid.New()
	expires := time.Date(2026, 11, 1, 13, 0, 0, 0, time.UTC)
	// Raw rows, foreign keys off: the keys that sealed them do not matter here.
	_, err = conn.Exec(ctx, `SET session_replication_role = replica`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO tenants (id, name, created_at) VALUES ($1, 't', now())`, tenant)
	require.NoError(t, err)
	for _, tok := range []struct {
		id      uuid.UUID
		cvc     []byte
		expires *time.Time
	}{{withCVC, []byte("sealed"), &expires}, {without, nil, nil}} {
		_, err = conn.Exec(ctx, `INSERT INTO tokens (id, tenant_id, fingerprint, fingerprint_key_id, key_id, pan_ct, cvc_ct,
			cvc_expires_at, iin, last_four, pan_length, scheme, exp_month, exp_year, created_at, updated_at)
			VALUES ($1, $2, '\x00', 1, 1, '\x00', $3, $4, '424242', '4242', 16, 'visa', 4, 2033, now(), now())`,
			tok.id, tenant, tok.cvc, tok.expires)
		require.NoError(t, err)
	}
	_, err = conn.Exec(ctx, `RESET session_replication_role`)
	require.NoError(t, err)
	require.NoError(t, migrations.MigrateTo(ctx, conn, 24))
	rows, err := conn.Query(ctx, `SELECT token_id, expires_at FROM cvc_expiries`)
	require.NoError(t, err)
	type entry struct {
		TokenID   uuid.UUID
		ExpiresAt time.Time
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entry])
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, withCVC, got[0].TokenID)
	assert.True(t, expires.Equal(got[0].ExpiresAt))
}

// tokenCTID returns the page and line pointer of the token's current row
// version.
func (e *env) tokenCTID(t *testing.T, id uuid.UUID) (block, item int64) {
	t.Helper()
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT (ctid::text::point)[0]::bigint, (ctid::text::point)[1]::bigint FROM tokens WHERE id = $1`, id).Scan(&block, &item))
	return block, item
}

// hotUpdated reports whether the row version at (block, item) of tokens
// was replaced by a HOT update (pageinspect's view of HEAP_HOT_UPDATED).
func (e *env) hotUpdated(t *testing.T, block, item int64) bool {
	t.Helper()
	ctx := context.Background()
	_, err := e.pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pageinspect`)
	require.NoError(t, err)
	var hot bool
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT t_infomask2 & 16384 <> 0
		FROM heap_page_items(get_raw_page('tokens', $1::int)) WHERE lp = $2`, block, item).Scan(&hot))
	return hot
}

// cvcGone reports whether the token no longer stores a CVC ciphertext.
func (e *env) cvcGone(t *testing.T, id uuid.UUID) bool {
	t.Helper()
	var gone bool
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT cvc_ct IS NULL FROM tokens WHERE id = $1`, id).Scan(&gone))
	return gone
}

// queuedCVCs counts the expiry queue's entries for the tokens ids.
func (e *env) queuedCVCs(t *testing.T, ids ...uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM cvc_expiries WHERE token_id = ANY($1)`, ids).Scan(&n))
	return n
}
