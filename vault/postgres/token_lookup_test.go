package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// auditCount returns how many rows of action name token id.
func (e *env) auditCount(t *testing.T, id uuid.UUID, action vault.Action) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE token_id = $1 AND action = $2`, id, string(action)).Scan(&n))
	return n
}

// brokenPair tokenizes two cards and gives the first the second's PAN
// ciphertext (bound to the other token's id, so it no longer decrypts). It
// returns the broken token and the intact one.
func (e *env) brokenPair(t *testing.T, prefix string) (bad, good vault.Token) {
	t.Helper()
	bad, _ = e.tokenize(t, visa(prefix+"_bad"))
	in := visa(prefix + "_good")
	in.Card.Number = "5555555555554444"
	good, _ = e.tokenize(t, in)
	_, err := e.pool.Exec(context.Background(), `UPDATE tokens SET pan_ct = (SELECT pan_ct FROM tokens WHERE id = $2)
		WHERE id = $1`, bad.ID, good.ID)
	require.NoError(t, err)
	return bad, good
}

// TestReadBatchAuditsOnlyWhatItFound: one read batch mixing a found token,
// the same token twice, an unknown id and another tenant's token finds
// only the requests of the token's own tenant and audits exactly those.
func TestReadBatchAuditsOnlyWhatItFound(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_lookup_read"))
	other := e.otherActor(t)
	unknown := uuid.New()
	found, err := postgres.ReadBatch(ctx, e.svc, []postgres.BatchLookup{
		{e.actor, tok.ID}, {other, tok.ID}, {e.actor, unknown}, {e.actor, tok.ID},
	})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, false, false, true}, found)
	assert.Equal(t, 2, e.auditCount(t, tok.ID, vault.ActionTokenRead))
	assert.Zero(t, e.auditCount(t, unknown, vault.ActionTokenRead))
}

// TestRevealBatchGivesTheCVCOnce: two reveals of one token in one batch
// both get the card; only the first gets the CVC and is audited as having
// revealed it; a foreign tenant's request for the token finds nothing.
func TestRevealBatchGivesTheCVCOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_lookup_reveal"))
	other := e.otherActor(t)
	found, out, err := postgres.RevealBatch(ctx, e.svc, []postgres.BatchLookup{{e.actor, tok.ID}, {other, tok.ID}, {e.actor, tok.ID}})
	require.NoError(t, err)
	assert.Equal(t, []bool{true, false, true}, found)
	assert.Equal(t, "4242424242424242", out[0].Card.PAN.Reveal())
	assert.Equal(t, "123", out[0].Card.CVC.Reveal())
	assert.Equal(t, "4242424242424242", out[2].Card.PAN.Reveal())
	assert.True(t, out[2].Card.CVC.IsZero(), "the CVC is revealed once")
	assert.Equal(t, []map[string]any{{"cvc_revealed": true}, {"cvc_revealed": false}}, e.revealDetails(t, tok.ID))
	var cvcGone bool
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cvc_ct IS NULL FROM tokens WHERE id = $1`, tok.ID).Scan(&cvcGone))
	assert.True(t, cvcGone)
}

// TestRevealBatchRollsBackForOneBadCard: a card that does not decrypt
// rolls its whole batch back (no CVC destroyed, no audit row); each
// request then reveals on its own, so only the bad one fails.
func TestRevealBatchRollsBackForOneBadCard(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bad, good := e.brokenPair(t, "pm_lookup")

	_, _, err := postgres.RevealBatch(ctx, e.svc, []postgres.BatchLookup{{e.actor, good.ID}, {e.actor, bad.ID}})
	require.ErrorIs(t, err, postgres.ErrRevealBatch)
	var cvcs int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE id IN ($1, $2) AND cvc_ct IS NOT NULL`,
		good.ID, bad.ID).Scan(&cvcs))
	assert.Equal(t, 2, cvcs, "the rolled-back batch destroyed no CVC")
	assert.Empty(t, e.revealDetails(t, good.ID))
	assert.Empty(t, e.revealDetails(t, bad.ID))

	out, err := e.svc.Detokenize(ctx, e.actor, good.ID, "")
	require.NoError(t, err)
	assert.Equal(t, "123", out.Card.CVC.Reveal())
	assert.Equal(t, "5555555555554444", out.Card.PAN.Reveal())
	_, err = e.svc.Detokenize(ctx, e.actor, bad.ID, "")
	assert.Equal(t, vault.KindInternal, vault.ErrorKind(err))
}

// TestConcurrentRevealsOfOneTokenGiveTheCVCOnce: many reveals of one token
// in flight together (sharing batches or not) all succeed, exactly one
// receives the CVC, and each has its own committed audit row when it
// returns.
func TestConcurrentRevealsOfOneTokenGiveTheCVCOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_lookup_concurrent"))
	const n = 48
	type result struct {
		cvc bool
		err error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			a := e.actor
			a.RequestID = fmt.Sprintf("req_reveal_%d", i)
			out, err := e.svc.Detokenize(ctx, a, tok.ID, "")
			if err == nil {
				var rows int
				err = e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE token_id = $1
					AND action = 'token.reveal' AND request_id = $2`, tok.ID, a.RequestID).Scan(&rows)
				if err == nil && rows != 1 {
					err = fmt.Errorf("%s returned with %d audit rows", a.RequestID, rows)
				}
			}
			results <- result{cvc: !out.Card.CVC.IsZero(), err: err}
		}()
	}
	withCVC := 0
	for range n {
		r := <-results
		require.NoError(t, r.err)
		if r.cvc {
			withCVC++
		}
	}
	assert.Equal(t, 1, withCVC)
	revealed := 0
	for _, d := range e.revealDetails(t, tok.ID) {
		if d["cvc_revealed"] == true {
			revealed++
		}
	}
	assert.Equal(t, 1, revealed)
}

// TestARevealWithoutACVCWritesNothingToTheToken: once its CVC is gone, a
// token is only read by a reveal, neither locked nor rewritten.
func TestARevealWithoutACVCWritesNothingToTheToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, visa("pm_reveal_again"))
	first, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	require.False(t, first.Card.CVC.IsZero())
	before := e.rowVersion(t, tok.ID)
	again, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
	require.NoError(t, err)
	assert.True(t, again.Card.CVC.IsZero())
	assert.Equal(t, "4242424242424242", again.Card.PAN.Reveal())
	assert.Equal(t, before, e.rowVersion(t, tok.ID), "the second reveal locks and writes nothing")
}

// TestRevealsOnSeveralReplicasGiveEachCVCOnce: replicas reveal in batches
// of their own, concurrently; a batch that waits for another's lock on a
// token must find its CVC gone, so each CVC is answered exactly once.
func TestRevealsOnSeveralReplicasGiveEachCVCOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const replicas, perReplica, tokens = 3, 4, 12
	var ids []uuid.UUID
	for i := range tokens {
		tok, _ := e.tokenize(t, visa(fmt.Sprintf("pm_replicas_%d", i)))
		ids = append(ids, tok.ID)
	}
	type answer struct {
		id  uuid.UUID
		cvc bool
		err error
	}
	answers := make(chan answer, replicas*perReplica*tokens)
	for range replicas {
		svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: e.clock.Now, CVCTTL: time.Hour})
		a := vaulttest.Actor(t, svc, e.secret)
		for range perReplica {
			go func() {
				for _, id := range ids {
					out, err := svc.Detokenize(ctx, a, id, "")
					answers <- answer{id, !out.Card.CVC.IsZero(), err}
				}
			}()
		}
	}
	withCVC := map[uuid.UUID]int{}
	for range replicas * perReplica * tokens {
		a := <-answers
		require.NoError(t, a.err)
		if a.cvc {
			withCVC[a.id]++
		}
	}
	for _, id := range ids {
		assert.Equal(t, 1, withCVC[id], "token %s", id)
	}
}
