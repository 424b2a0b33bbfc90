package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// revealDetails returns the detail of each token.reveal audit event of a
// token, oldest first.
func (e *env) revealDetails(t *testing.T, tokenID uuid.UUID) []map[string]any {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT detail FROM audit_events
		WHERE token_id = $1 AND action = 'token.reveal' ORDER BY id`, tokenID)
	require.NoError(t, err)
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var raw []byte
		require.NoError(t, rows.Scan(&raw))
		var d map[string]any
		require.NoError(t, json.Unmarshal(raw, &d))
		out = append(out, d)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestReadIsAuditedBeforeItReturns: a read of a token has committed exactly
// one token.read audit row when it returns; an unknown or foreign id writes
// none.
func TestReadIsAuditedBeforeItReturns(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_fast_read"))
	got, err := e.svc.GetToken(ctx, e.actor, tok.ID)
	require.NoError(t, err)
	assert.Equal(t, tok.ID, got.ID)
	assert.Equal(t, "John Doe", got.CardholderName)
	assert.Equal(t, []string{"token.create", "token.read"}, e.auditActions(t, tok.ID))

	tests := []struct {
		name  string
		actor vault.Actor
		id    uuid.UUID
	}{
		{"unknown id", e.actor, uuid.New()},
		{"another tenant's id", e.otherActor(t), tok.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.GetToken(ctx, tt.actor, tt.id)
			assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))
			var n int
			require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE token_id = $1
				AND action = 'token.read' AND tenant_id = $2`, tt.id, tt.actor.TenantID).Scan(&n))
			assert.Zero(t, n, "a failed read writes no token.read row")
		})
	}
}

// TestRevealAuditsCVCAndReason: the first reveal returns the CVC and
// destroys it, and its audit row says so with the reason; the second
// returns none and says so.
func TestRevealAuditsCVCAndReason(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_fast_reveal"))
	first, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "charge")
	require.NoError(t, err)
	assert.Equal(t, "123", first.Card.CVC.Reveal())
	assert.False(t, first.Token.CVCAvailable)
	second, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	assert.True(t, second.Card.CVC.IsZero(), "the CVC is revealed once")
	assert.Equal(t, "4242424242424242", second.Card.PAN.Reveal())
	assert.Equal(t, []map[string]any{
		{"cvc_revealed": true, "reason": "charge"},
		{"cvc_revealed": false},
	}, e.revealDetails(t, tok.ID))
	assert.True(t, e.cvcGone(t, tok.ID))
}

// TestRevealOfExpiredCVCSaysNotRevealed: a CVC past its TTL is neither
// returned nor counted as revealed, and it is destroyed all the same.
func TestRevealOfExpiredCVCSaysNotRevealed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_fast_expired"))
	e.clock.Advance(2 * time.Hour) // the env's CVC TTL is one hour
	out, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	assert.True(t, out.Card.CVC.IsZero())
	assert.Equal(t, []map[string]any{{"cvc_revealed": false}}, e.revealDetails(t, tok.ID))
}

// TestFailedRevealKeepsCVCAndWritesNoAudit: when the card cannot be
// decrypted the reveal's transaction rolls back: the CVC stays and no
// token.reveal row is written.
func TestFailedRevealKeepsCVCAndWritesNoAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.brokenPair(t, "pm_fast_broken")
	_, err := e.svc.Detokenize(ctx, e.actor, a.ID, "")
	assert.Equal(t, vault.KindInternal, vault.ErrorKind(err))
	var cvcKept bool
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cvc_ct IS NOT NULL FROM tokens WHERE id = $1`, a.ID).Scan(&cvcKept))
	assert.True(t, cvcKept, "the rolled-back reveal keeps the CVC")
	assert.Empty(t, e.revealDetails(t, a.ID))
	// The pool is left healthy: the next reveal on it works.
	_, err = e.svc.Detokenize(ctx, e.actor, b.ID, "")
	require.NoError(t, err)
}

// TestConcurrentReadsEachAuditedOnce: reads in flight together share audit
// batches (auditBatch); each has its own committed row when it returns,
// and none waits forever.
func TestConcurrentReadsEachAuditedOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_fast_concurrent"))
	const readers = 64
	errs := make(chan error, readers)
	for i := range readers {
		go func() {
			a := e.actor
			a.RequestID = fmt.Sprintf("req_concurrent_%d", i)
			_, err := e.svc.GetToken(ctx, a, tok.ID)
			if err == nil {
				// This read's own row must already have committed.
				var n int
				err = e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE token_id = $1
					AND action = 'token.read' AND request_id = $2`, tok.ID, a.RequestID).Scan(&n)
				if err == nil && n != 1 {
					err = fmt.Errorf("%s returned with %d audit rows", a.RequestID, n)
				}
			}
			errs <- err
		}()
	}
	for range readers {
		require.NoError(t, <-errs)
	}
	var n int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE token_id = $1 AND action = 'token.read'`,
		tok.ID).Scan(&n))
	assert.Equal(t, readers, n)
}
