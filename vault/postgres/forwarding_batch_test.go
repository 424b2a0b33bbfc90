package postgres_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// forwardIn is a forward of pm's card to url with the own-vault body.
func forwardIn(pm, url, idemKey string, replacements ...string) vault.ForwardInput {
	return vault.ForwardInput{PaymentMethod: pm, URL: url, Replacements: replacements, Body: ownVaultBody,
		IdempotencyKey: idemKey, Headers: []vault.ForwardHeader{{Name: "X-API-Key", Value: "dest_secret_key"}}}
}

// forwardAudits returns the cvc_used detail of each token.forward audit
// row of a token, oldest first.
func (e *forwardEnv) forwardAudits(t *testing.T, tokenID uuid.UUID) []bool {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT (detail->>'cvc_used')::boolean FROM audit_events
		WHERE token_id = $1 AND action = 'token.forward' ORDER BY id`, tokenID)
	require.NoError(t, err)
	defer rows.Close()
	var out []bool
	for rows.Next() {
		var used bool
		require.NoError(t, rows.Scan(&used))
		out = append(out, used)
	}
	return out
}

// pendingRecords returns the ids of the tenant's pending records.
func (e *forwardEnv) pendingRecords(t *testing.T) []string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT id FROM forwarding_requests
		WHERE tenant_id = $1 AND status = 'pending' ORDER BY id`, e.actor.TenantID)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		out = append(out, id)
	}
	return out
}

// TestAForwardBatchDecidesEachRequestOnItsOwn: one pre-send batch mixing
// two forwards of one token (only the first gets its CVC), a forward
// without the CVC, an unknown payment method, a URL off the allow-list,
// another tenant's token, a body that does not parse and three requests
// with one Idempotency-Key (the second a replay, the third another
// request) commits exactly the forwards it may send, each with its audit
// row, and fails the others alone.
func TestAForwardBatchDecidesEachRequestOnItsOwn(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	a, _ := e.tokenize(t, visa("pm_batch_a"))
	b, _ := e.tokenize(t, visa("pm_batch_b"))
	c, _ := e.tokenize(t, visa("pm_batch_c"))
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	bad := forwardIn("pm_batch_a", url, "")
	bad.Body, bad.Replacements = "not json", []string{"card_number"}
	reqs := []postgres.ForwardBatchRequest{
		{Actor: e.actor, In: forwardIn("pm_batch_a", url, "", allCardFields...)},
		{Actor: e.actor, In: forwardIn(a.ID.String(), url, "", allCardFields...)},
		{Actor: e.actor, In: forwardIn("pm_batch_b", url, "", "card_number")},
		{Actor: e.actor, In: forwardIn("pm_nobody", url, "", "card_number")},
		{Actor: e.actor, In: forwardIn("pm_batch_a", dest.URL+"/elsewhere", "", "card_number")},
		{Actor: e.otherActor(t), In: forwardIn("pm_batch_a", url, "", "card_number")},
		{Actor: e.actor, In: bad},
		{Actor: e.actor, In: forwardIn("pm_batch_c", url, "key-batch", "card_number")},
		{Actor: e.actor, In: forwardIn("pm_batch_c", url, "key-batch", "card_number")},
		{Actor: e.actor, In: forwardIn("pm_batch_c", url, "key-batch", "card_number", "card_expiry")},
	}
	recs, errs, refused, err := postgres.PrepareForwardBatch(ctx, e.svc, reqs)
	require.NoError(t, err)
	require.False(t, refused)

	for i, want := range []struct {
		kind vault.Kind
		code string
	}{{}, {}, {}, {vault.KindNotFound, vault.CodeResourceMissing}, {vault.KindBadRequest, vault.CodeForwardInvalidParameter},
		{vault.KindNotFound, vault.CodeResourceMissing}, {vault.KindBadRequest, vault.CodeForwardInvalidParameter},
		{}, {}, {vault.KindIdempotency, vault.CodeIdempotencyError}} {
		if want.code == "" {
			require.NoError(t, errs[i], "request %d", i)
			assert.Equal(t, vault.ForwardPending, recs[i].Status, "request %d", i)
			continue
		}
		require.Error(t, errs[i], "request %d", i)
		assert.Equal(t, want.kind, vault.ErrorKind(errs[i]), "request %d: %v", i, errs[i])
		assert.Equal(t, want.code, vault.AsError(errs[i]).Code, "request %d", i)
	}
	assert.True(t, recs[8].Replayed, "the same request with the same key replays the first")
	assert.Equal(t, recs[7].ID, recs[8].ID)
	assert.ElementsMatch(t, []string{recs[0].ID, recs[1].ID, recs[2].ID, recs[7].ID}, e.pendingRecords(t))

	assert.Equal(t, []bool{true, false}, e.forwardAudits(t, a.ID), "two forwards of A, the first used its CVC")
	assert.Equal(t, []bool{false}, e.forwardAudits(t, b.ID))
	assert.Equal(t, []bool{false}, e.forwardAudits(t, c.ID))
	for tok, available := range map[uuid.UUID]bool{a.ID: false, b.ID: true, c.ID: true} {
		got, err := e.svc.GetToken(ctx, e.actor, tok)
		require.NoError(t, err)
		assert.Equal(t, available, got.CVCAvailable, "token %s", tok)
	}
	assert.Empty(t, dest.received(), "preparing sends nothing")
}

// TestAForwardPostgreSQLRefusesFailsAloneInItsBatch: when the database
// refuses one forward of a batch, the batch writes nothing and each
// forward prepares alone: the others are committed, the refused one fails
// and leaves no audit row, no record and its CVC.
func TestAForwardPostgreSQLRefusesFailsAloneInItsBatch(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	toks := make([]vault.Token, 3)
	reqs := make([]postgres.ForwardBatchRequest, 3)
	for i := range toks {
		toks[i], _ = e.tokenize(t, visa(fmt.Sprintf("pm_refused_%d", i)))
		reqs[i] = postgres.ForwardBatchRequest{Actor: e.actor,
			In: forwardIn(toks[i].BusinessKey, url, fmt.Sprintf("key-%d", i), allCardFields...), RefusedKey: i == 1}
	}
	recs, errs, refused, err := postgres.PrepareForwardBatch(ctx, e.svc, reqs)
	require.NoError(t, err)
	assert.True(t, refused, "the database refused the batch")
	require.Error(t, errs[1])
	assert.Equal(t, vault.KindInternal, vault.ErrorKind(errs[1]))
	assert.Empty(t, e.forwardAudits(t, toks[1].ID))
	got, err := e.svc.GetToken(ctx, e.actor, toks[1].ID)
	require.NoError(t, err)
	assert.True(t, got.CVCAvailable, "the refused forward keeps the CVC")
	for _, i := range []int{0, 2} {
		require.NoError(t, errs[i], "request %d", i)
		assert.Equal(t, []bool{true}, e.forwardAudits(t, toks[i].ID), "request %d", i)
	}
	assert.ElementsMatch(t, []string{recs[0].ID, recs[2].ID}, e.pendingRecords(t))
}

// TestConcurrentForwardsOfManyTokensSendEachCVCOnce: many forwards at once,
// two per token, all asking for the CVC, go through the group commit:
// every one is sent and recorded as succeeded, each token's CVC goes out
// exactly once, and each forward has its own audit row.
func TestConcurrentForwardsOfManyTokensSendEachCVCOnce(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	const tokens, perToken = 16, 2
	ids := make([]uuid.UUID, tokens)
	for i := range ids {
		tok, _ := e.tokenize(t, visa(fmt.Sprintf("pm_many_%d", i)))
		ids[i] = tok.ID
	}
	var wg sync.WaitGroup
	errs := make(chan error, tokens*perToken)
	for i := range tokens * perToken {
		wg.Go(func() {
			rec, err := e.forward(t, fmt.Sprintf("pm_many_%d", i%tokens), url, "", allCardFields...)
			if err == nil && rec.Status != vault.ForwardSucceeded {
				err = fmt.Errorf("forward %d is %s", i, rec.Status)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	withCVC := 0
	for _, body := range dest.received() {
		if strings.Contains(body, `"cvc":"123"`) {
			withCVC++
		}
	}
	assert.Len(t, dest.received(), tokens*perToken)
	assert.Equal(t, tokens, withCVC, "each token's CVC went out once")
	for _, id := range ids {
		assert.ElementsMatch(t, []bool{true, false}, e.forwardAudits(t, id))
	}
	assert.Empty(t, e.pendingRecords(t))
}

// TestAnOutcomePostgreSQLRefusesIsWrittenAloneInItsBatch: when the database
// refuses one outcome of a batch (here, one naming a key the tenant never
// had), nothing of the batch is written and each outcome is written alone:
// every record ends succeeded, its answer sealed under the tenant's key.
func TestAnOutcomePostgreSQLRefusesIsWrittenAloneInItsBatch(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	ctx := context.Background()
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	reqs := make([]postgres.ForwardBatchRequest, 3)
	for i := range reqs {
		e.tokenize(t, visa(fmt.Sprintf("pm_outcome_%d", i)))
		reqs[i] = postgres.ForwardBatchRequest{Actor: e.actor, In: forwardIn(fmt.Sprintf("pm_outcome_%d", i), url, "", "card_number")}
	}
	recs, errs, _, err := postgres.PrepareForwardBatch(ctx, e.svc, reqs)
	require.NoError(t, err)
	items := make([]postgres.OutcomeBatchItem, len(recs))
	for i, rec := range recs {
		require.NoError(t, errs[i])
		items[i] = postgres.OutcomeBatchItem{Rec: rec, BadKey: i == 1}
	}
	errs, refused, err := postgres.WriteOutcomeBatch(ctx, e.svc, items)
	require.NoError(t, err)
	assert.True(t, refused, "the database refused the batch")
	for i, rec := range recs {
		require.NoError(t, errs[i], "outcome %d", i)
		stored, err := e.svc.GetForwardingRequest(ctx, e.actor, rec.ID)
		require.NoError(t, err)
		assert.Equal(t, vault.ForwardSucceeded, stored.Status, "outcome %d", i)
		require.NotNil(t, stored.Response, "outcome %d", i)
		assert.Equal(t, `{"ok":true}`, stored.Response.Body)
	}
	assert.Empty(t, e.pendingRecords(t))
}

// tinkKeyID is the key id in the output prefix of a Tink ciphertext.
func tinkKeyID(ct []byte) int64 {
	return int64(binary.BigEndian.Uint32(ct[1:5]))
}

// TestAnOutcomeAfterTheRecordWasResealedNamesTheKeyItIsUnder: a replica
// whose cached keys are stale forwards while the data key is rotated and
// the records re-encrypted (the destination does it before answering), so
// the pending record is sealed again under the new key before the outcome
// is written. The outcome is still stored, and the row's key id names the
// key both its request and its answer are sealed under.
func TestAnOutcomeAfterTheRecordWasResealedNamesTheKeyItIsUnder(t *testing.T) {
	var e *forwardEnv
	var rotated sync.Once
	dest := newRecorder(t, func(w http.ResponseWriter, body []byte) {
		rotated.Do(func() {
			_, err := e.svc.RotateDataKey(context.Background(), e.actor, 0)
			require.NoError(t, err)
			require.NoError(t, reencrypt(context.Background(), e))
		})
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	e = newForwardEnv(t, dest.Server)
	ctx := context.Background()
	stale := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: e.clock.Now,
		Egress: vaulttest.LoopbackEgress(5*time.Second, dest.Server), AllowLoopback: true})
	staleActor := vaulttest.Actor(t, stale, e.secret)
	e.tokenize(t, visa("pm_resealed"))
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)

	rec, err := stale.Forward(ctx, staleActor, forwardIn("pm_resealed", url, "", "card_number"))
	require.NoError(t, err)
	assert.Equal(t, vault.ForwardSucceeded, rec.Status)
	var keyID int64
	var reqCT, respCT []byte
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT key_id, request_ct, response_ct FROM forwarding_requests WHERE id = $1`,
		rec.ID).Scan(&keyID, &reqCT, &respCT))
	assert.Equal(t, keyID, tinkKeyID(reqCT), "the request details are under the row's key")
	assert.Equal(t, keyID, tinkKeyID(respCT), "the answer is under the row's key")
	stored, err := e.svc.GetForwardingRequest(ctx, e.actor, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, vault.ForwardSucceeded, stored.Status)
	assert.Equal(t, rec.Request, stored.Request)
}

// TestAForwardWithoutACVCWritesNothingToTheToken: once its CVC is used, a
// token is only read by the forwards that follow (a merchant's repeated
// charges), neither locked nor rewritten, and they send the card without
// a CVC.
func TestAForwardWithoutACVCWritesNothingToTheToken(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	tok, _ := e.tokenize(t, visa("pm_charge_again"))
	_, err := e.forward(t, "pm_charge_again", url, "", allCardFields...)
	require.NoError(t, err)
	before := e.rowVersion(t, tok.ID)
	rec, err := e.forward(t, "pm_charge_again", url, "", allCardFields...)
	require.NoError(t, err)
	assert.Equal(t, vault.ForwardSucceeded, rec.Status)
	assert.Equal(t, before, e.rowVersion(t, tok.ID), "the second forward locks and writes nothing on the token")
	sent := dest.received()
	require.Len(t, sent, 2)
	assert.Contains(t, sent[0], `"cvc":"123"`)
	assert.NotContains(t, sent[1], `"cvc":"123"`)
	assert.Contains(t, sent[1], "4242424242424242")
	assert.Equal(t, []bool{true, false}, e.forwardAudits(t, tok.ID))
}

// TestForwardsOnSeveralReplicasSendEachCVCOnce: replicas prepare forwards
// in batches of their own, concurrently; a batch that waits for another's
// lock on a token must find its CVC gone, so each CVC goes out once.
func TestForwardsOnSeveralReplicasSendEachCVCOnce(t *testing.T) {
	dest := newRecorder(t, nil)
	e := newForwardEnv(t, dest.Server)
	url := dest.URL + "/cde-import"
	e.ownVaultDestination(t, url)
	const replicas, perReplica, tokens = 3, 3, 8
	for i := range tokens {
		e.tokenize(t, visa(fmt.Sprintf("pm_fwd_replicas_%d", i)))
	}
	errs := make(chan error, replicas*perReplica*tokens)
	for range replicas {
		svc := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: e.clock.Now, CVCTTL: time.Hour,
			Egress: vaulttest.LoopbackEgress(5*time.Second, dest.Server), AllowLoopback: true})
		a := vaulttest.Actor(t, svc, e.secret)
		for range perReplica {
			go func() {
				for i := range tokens {
					in := forwardIn(fmt.Sprintf("pm_fwd_replicas_%d", i), url, "", allCardFields...)
					_, err := svc.Forward(context.Background(), a, in)
					errs <- err
				}
			}()
		}
	}
	for range replicas * perReplica * tokens {
		require.NoError(t, <-errs)
	}
	withCVC := 0
	for _, body := range dest.received() {
		if strings.Contains(body, `"cvc":"123"`) {
			withCVC++
		}
	}
	assert.Len(t, dest.received(), replicas*perReplica*tokens)
	assert.Equal(t, tokens, withCVC, "each token's CVC went out once")
}
