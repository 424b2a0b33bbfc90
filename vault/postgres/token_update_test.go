package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// testNumber returns the i-th Luhn-valid number of the public test BIN
// 424242.
func testNumber(i int) string {
	body := fmt.Sprintf("424242%09d", 100000000+i)
	sum := 0
	for j := len(body) - 1; j >= 0; j-- {
		d := int(body[j] - '0')
		if (len(body)-j)%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + strconv.Itoa((10-sum%10)%10)
}

// updateAudit is one token.update audit row's fingerprints.
type updateAudit struct{ before, after string }

// updateAudits returns the token.update audit rows of a token, oldest
// first.
func (e *env) updateAudits(t *testing.T, id uuid.UUID) []updateAudit {
	t.Helper()
	rows, err := e.pool.Query(context.Background(),
		`SELECT detail->>'fingerprint_before', detail->>'fingerprint_after' FROM audit_events
		WHERE token_id = $1 AND action = 'token.update' ORDER BY id`, id)
	require.NoError(t, err)
	defer rows.Close()
	var out []updateAudit
	for rows.Next() {
		var a updateAudit
		require.NoError(t, rows.Scan(&a.before, &a.after))
		out = append(out, a)
	}
	require.NoError(t, rows.Err())
	return out
}

// updatedEvents counts the tenant's token.updated webhook events.
func (e *env) updatedEvents(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM webhook_events WHERE tenant_id = $1 AND type = $2`,
		e.actor.TenantID, string(vault.EventTokenUpdated)).Scan(&n))
	return n
}

// updateAll tokenizes ins, one after the other or all at once, and
// requires each to answer the existing token (not created) of its business
// key (ids) carrying its own card.
func (e *env) updateAll(t *testing.T, ins []vault.TokenizeInput, ids map[string]uuid.UUID, concurrent bool) {
	t.Helper()
	errs := make([]error, len(ins))
	run := func(i int) {
		tok, created, err := e.svc.Tokenize(context.Background(), e.actor, ins[i])
		switch {
		case err != nil:
			errs[i] = err
		case created || tok.ID != ids[ins[i].BusinessKey] || tok.LastFour != ins[i].Card.Number[12:]:
			errs[i] = fmt.Errorf("%s: answered %+v", ins[i].BusinessKey, tok)
		}
	}
	var wg sync.WaitGroup
	for i := range ins {
		if !concurrent {
			run(i)
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); run(i) }()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// TestConcurrentUpdatesOfDistinctTokensAreEachKept: account updates of
// many tokens at once (written together in update batches) leave every
// token exactly as the same updates one after the other do: the new card
// under the same id, the replaced card as its one version, one
// token.update audit row with both fingerprints and one token.updated
// event each.
func TestConcurrentUpdatesOfDistinctTokensAreEachKept(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/hooks")
			require.NoError(t, err)
			const n = 24
			ids, firsts := map[string]uuid.UUID{}, map[string]vault.Token{}
			var updates []vault.TokenizeInput
			for i := range n {
				k := fmt.Sprintf("pm_u%d", i)
				first, _ := e.tokenize(t, cardOf(k, testNumber(i), "04"))
				ids[k], firsts[k] = first.ID, first
				updates = append(updates, cardOf(k, testNumber(n+i), "05"))
			}
			e.updateAll(t, updates, ids, concurrent)
			for _, in := range updates {
				k, id := in.BusinessKey, ids[in.BusinessKey]
				got, err := e.svc.Detokenize(ctx, e.actor, id, "")
				require.NoError(t, err)
				assert.Equal(t, in.Card.Number, got.Card.PAN.Reveal(), k)
				assert.Equal(t, 5, got.Card.Expiry.Month, k)
				versions, err := e.svc.ListTokenVersions(ctx, e.actor, id)
				require.NoError(t, err)
				require.Len(t, versions, 1, k)
				assert.Equal(t, firsts[k].LastFour, versions[0].LastFour, k)
				assert.Equal(t, firsts[k].Fingerprint, versions[0].Fingerprint, k)
				assert.Equal(t, []updateAudit{{fingerprintOf(firsts[k]), fingerprintOf(got.Token)}}, e.updateAudits(t, id), k)
			}
			assert.Equal(t, n, e.updatedEvents(t))
		})
	}
}

// TestConcurrentUpdatesOfOneTokenKeepEveryVersion: many account updates of
// one token at once behave as the same updates one after the other in
// some order: the last writer's card is the token's, every card it
// replaced is a version, and the token.update audit rows chain, each
// one's fingerprint_before the previous one's fingerprint_after, the last
// one's after the token's.
func TestConcurrentUpdatesOfOneTokenKeepEveryVersion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/hooks")
	require.NoError(t, err)
	first, _ := e.tokenize(t, cardOf("pm_same", testNumber(0), "04"))
	const n = 16
	var updates []vault.TokenizeInput
	for i := 1; i <= n; i++ {
		updates = append(updates, cardOf("pm_same", testNumber(i), "04"))
	}
	e.updateAll(t, updates, map[string]uuid.UUID{"pm_same": first.ID}, true)

	final, err := e.svc.Detokenize(ctx, e.actor, first.ID, "")
	require.NoError(t, err)
	versions, err := e.svc.ListTokenVersions(ctx, e.actor, first.ID)
	require.NoError(t, err)
	require.Len(t, versions, n, "every replaced card is kept")
	cards := []string{final.Card.PAN.LastFour()}
	for _, v := range versions {
		cards = append(cards, v.LastFour)
	}
	want := []string{first.LastFour}
	for _, in := range updates {
		want = append(want, in.Card.Number[12:])
	}
	slices.Sort(cards)
	slices.Sort(want)
	assert.Equal(t, want, cards, "the token and its versions hold every card once")

	audits := e.updateAudits(t, first.ID)
	require.Len(t, audits, n)
	assert.Equal(t, fingerprintOf(first), audits[0].before)
	for i := 1; i < n; i++ {
		assert.Equal(t, audits[i-1].after, audits[i].before, "update %d replaced the card update %d wrote", i, i-1)
	}
	assert.Equal(t, fingerprintOf(final.Token), audits[n-1].after, "the last writer's card is the token's")
	// versions are newest first: the newest replaced the card the last
	// audit row names before
	assert.Equal(t, audits[n-1].before, fingerprintOf(vault.Token{Fingerprint: versions[0].Fingerprint}))
	assert.Equal(t, n, e.updatedEvents(t))
}

// fingerprintOf is a token's fingerprint as audit rows write it.
func fingerprintOf(tok vault.Token) string { return tok.Record().Fingerprint }

// TestUpdateBatchFailureFailsOnlyTheBadRequest: an update batch is one
// transaction; when PostgreSQL refuses it (here one request's card breaks
// a CHECK), every request is reconciled again alone, so only the bad one
// fails and nothing of it is kept. A batch PostgreSQL accepts settles
// every request itself.
func TestUpdateBatchFailureFailsOnlyTheBadRequest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	keys := []string{"pm_ub_a", "pm_ub_b", "pm_ub_bad"}
	ids := map[string]uuid.UUID{}
	for i, k := range keys {
		tok, _ := e.tokenize(t, cardOf(k, testNumber(i), "04"))
		ids[k] = tok.ID
	}
	var ins []vault.TokenizeInput
	for i, k := range keys {
		ins = append(ins, cardOf(k, testNumber(10+i), "04"))
	}
	alone, errs, err := postgres.WriteUpdateBatch(ctx, e.svc, e.actor, ins, true)
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true, true}, alone, "the refused batch is reconciled request by request")
	assert.NoError(t, errs[0])
	assert.NoError(t, errs[1])
	assert.Error(t, errs[2])
	for i, k := range keys {
		versions, err := e.svc.ListTokenVersions(ctx, e.actor, ids[k])
		require.NoError(t, err)
		wantVersions, wantUpdates := 1, 1
		if i == 2 {
			wantVersions, wantUpdates = 0, 0
		}
		assert.Len(t, versions, wantVersions, k)
		assert.Len(t, e.updateAudits(t, ids[k]), wantUpdates, k)
	}

	for i := range ins[:2] {
		ins[i] = cardOf(keys[i], testNumber(20+i), "04")
	}
	alone, errs, err = postgres.WriteUpdateBatch(ctx, e.svc, e.actor, ins[:2], false)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false}, alone, "an accepted batch settles its requests")
	assert.Equal(t, []error{nil, nil}, errs)
	for _, k := range keys[:2] {
		assert.Len(t, e.updateAudits(t, ids[k]), 2, k)
	}
}

// TestAnUpdateBatchUpdatesOneTokenInArrivalOrder: two updates of one token
// in one batch are applied one after the other: the second replaces the
// card the first wrote, both replaced cards are versions, and the second's
// card is the token's.
func TestAnUpdateBatchUpdatesOneTokenInArrivalOrder(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first, _ := e.tokenize(t, cardOf("pm_twice", testNumber(0), "04"))
	ins := []vault.TokenizeInput{cardOf("pm_twice", testNumber(1), "05"), cardOf("pm_twice", testNumber(2), "06")}
	alone, errs, err := postgres.WriteUpdateBatch(ctx, e.svc, e.actor, ins, false)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false}, alone)
	assert.Equal(t, []error{nil, nil}, errs)
	got, err := e.svc.Detokenize(ctx, e.actor, first.ID, "")
	require.NoError(t, err)
	assert.Equal(t, testNumber(2), got.Card.PAN.Reveal())
	assert.Equal(t, 6, got.Card.Expiry.Month)
	versions, err := e.svc.ListTokenVersions(ctx, e.actor, first.ID)
	require.NoError(t, err)
	require.Len(t, versions, 2)
	assert.Equal(t, []string{testNumber(1)[12:], first.LastFour}, []string{versions[0].LastFour, versions[1].LastFour})
	assert.Equal(t, []int{5, 4}, []int{versions[0].ExpiryMonth, versions[1].ExpiryMonth})
	audits := e.updateAudits(t, first.ID)
	require.Len(t, audits, 2)
	assert.Equal(t, fingerprintOf(first), audits[0].before)
	assert.Equal(t, audits[0].after, audits[1].before)
	assert.Equal(t, fingerprintOf(got.Token), audits[1].after)
}

// TestAnUpdateBatchLocksItsAuditLaneWithItsTokens: the first round trip of
// an update batch locks, besides its tokens, a lane of its tenant's audit
// chain, so that its audit rows need no round trip of their own: while it
// holds them, another transaction finds the token and one lane held.
func TestAnUpdateBatchLocksItsAuditLaneWithItsTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.tokenize(t, cardOf("pm_lanes", testNumber(0), "04"))
	ins := []vault.TokenizeInput{cardOf("pm_lanes", testNumber(1), "05")}
	err := postgres.WhileUpdateBatchLocked(ctx, e.svc, e.actor, ins, func() error {
		var free, tokens int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM audit_lanes WHERE chain_id = $1
			FOR UPDATE SKIP LOCKED) l`, e.actor.TenantID).Scan(&free); err != nil {
			return err
		}
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM tokens WHERE tenant_id = $1
			AND business_key = 'pm_lanes' FOR UPDATE SKIP LOCKED) k`, e.actor.TenantID).Scan(&tokens); err != nil {
			return err
		}
		assert.Equal(t, 7, free, "one of the chain's eight lanes is held")
		assert.Equal(t, 0, tokens, "the token is held")
		return nil
	})
	require.NoError(t, err)
}

// TestUpdateBatchesKeepTheAuditChainValid: update batches (several updates
// of one token among updates of others, concurrent with new tokens) leave
// a tenant's audit chain that verifies, each row written once.
func TestUpdateBatchesKeepTheAuditChainValid(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/hooks")
	require.NoError(t, err)
	ids := map[string]uuid.UUID{}
	for i := range 4 {
		k := fmt.Sprintf("pm_chain%d", i)
		tok, _ := e.tokenize(t, cardOf(k, testNumber(i), "04"))
		ids[k] = tok.ID
	}
	refresh := cardOf("pm_chain3", testNumber(3), "04") // the card it holds, with a CVC
	refresh.Card.CVC = "321"
	ins := []vault.TokenizeInput{cardOf("pm_chain0", testNumber(10), "05"), cardOf("pm_chain1", testNumber(11), "05"),
		cardOf("pm_chain0", testNumber(12), "06"), cardOf("pm_chain2", testNumber(13), "05"), refresh}
	alone, errs, err := postgres.WriteUpdateBatch(ctx, e.svc, e.actor, ins, false)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false, false, false, false}, alone)
	assert.Equal(t, []error{nil, nil, nil, nil, nil}, errs)
	assert.Equal(t, 4, e.updatedEvents(t), "one token.updated event per changed card, none for a refreshed CVC")
	got, err := e.svc.Detokenize(ctx, e.actor, ids["pm_chain3"], "")
	require.NoError(t, err)
	assert.Equal(t, "321", got.Card.CVC.Reveal(), "the refreshed CVC is stored")
	assert.Equal(t, testNumber(3), got.Card.PAN.Reveal())
	versions, err := e.svc.ListTokenVersions(ctx, e.actor, ids["pm_chain3"])
	require.NoError(t, err)
	assert.Empty(t, versions, "a refreshed CVC keeps no version")
	var more []vault.TokenizeInput
	for i := range 12 {
		more = append(more, cardOf(fmt.Sprintf("pm_chain%d", i%4), testNumber(20+i), "07"))
	}
	e.updateAll(t, more, ids, true)
	r, err := e.svc.VerifyAudit(ctx, &e.actor.TenantID)
	require.NoError(t, err)
	assert.True(t, r.OK, "%+v", r)
	assert.Len(t, e.updateAudits(t, ids["pm_chain0"]), 2+3)
	assert.Equal(t, 4+12, e.updatedEvents(t))
}
