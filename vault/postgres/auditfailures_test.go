package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestRefusalsAreWrittenWhenTheirWindowEnds: without any flush, the
// window's rows are written once it ends, one per source with its count;
// the next window starts afresh.
func TestRefusalsAreWrittenWhenTheirWindowEnds(t *testing.T) {
	ctx := context.Background()
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{AccessFailureWindow: 100 * time.Millisecond})
	pool := vaulttest.Pool(t, dbURL)
	addr := "198.51.100." + uuid.NewString()[:3] // this test's own source
	f := vault.AccessFailure{Action: vault.ActionAuthFailed, Outcome: vault.OutcomeFailure, Reason: "unknown_key",
		Route: "GET /tokens", ClientAddr: addr, RequestID: "req_window"}
	counts := func() []int64 {
		rows, err := pool.Query(ctx, `SELECT (detail->>'count')::bigint FROM audit_events
			WHERE action = 'auth.failed' AND client_addr = $1 ORDER BY id`, addr)
		require.NoError(t, err)
		defer rows.Close()
		var out []int64
		for rows.Next() {
			var n int64
			require.NoError(t, rows.Scan(&n))
			out = append(out, n)
		}
		require.NoError(t, rows.Err())
		return out
	}
	for range 3 {
		svc.RecordAccessFailure(ctx, f)
	}
	require.Eventually(t, func() bool { return len(counts()) == 1 }, 10*time.Second, 10*time.Millisecond, "the window ends by itself")
	svc.RecordAccessFailure(ctx, f)
	require.Eventually(t, func() bool { return len(counts()) == 2 }, 10*time.Second, 10*time.Millisecond, "and so does the next")
	assert.Equal(t, []int64{3, 1}, counts())
}

// passesForAPAN is a token id (a UUIDv7 a test once drew) whose digit
// groups joined by '-', 8848-5846613604 after 0849, pass for a card number.
const passesForAPAN = "01a24ed2-0849-736f-8848-5846613604ac"

// TestARequestedCardNumberIsDropped: a requested id holding a card
// number, even disguised, is not kept (so two such requests are one
// source), but a token id is, whatever its digits; other ids are cut to
// printable characters.
func TestARequestedCardNumberIsDropped(t *testing.T) {
	require.True(t, card.ContainsPAN(passesForAPAN), "the token id's digit groups pass for a card number")
	ctx := context.Background()
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{AccessFailureWindow: time.Hour})
	pool := vaulttest.Pool(t, dbURL)
	addr := "203.0.113." + uuid.NewString()[:3]
	for _, id := range []string{"4242 4242 4242 4242", "4242-4242-4242-4242", "tok\x00\n\u00e9x", passesForAPAN} {
		svc.RecordAccessFailure(ctx, vault.AccessFailure{Action: vault.ActionAccessFailed, Outcome: vault.OutcomeFailure,
			Reason: vault.CodeResourceMissing, Route: "GET /tokens/:id", RequestedID: id, ClientAddr: addr})
	}
	require.NoError(t, svc.FlushAccessFailures(ctx))
	rows, err := pool.Query(ctx, `SELECT detail->>'requested_id' FROM audit_events WHERE client_addr = $1 ORDER BY 1`, addr)
	require.NoError(t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{passesForAPAN, "[card number removed]", "tok????x"}, ids,
		"both card numbers share one row; the token id is kept")
}
