package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

func idemReq(key, body string) vault.IdempotentRequest {
	return vault.IdempotentRequest{Key: key, Method: "POST", Path: "/tokens", Body: []byte(body)}
}

// begin claims r and fails the test unless it may run.
func (e *env) begin(t *testing.T, a vault.Actor, r vault.IdempotentRequest) vault.IdempotencyClaim {
	t.Helper()
	c, stored, err := e.svc.BeginIdempotent(context.Background(), a, r)
	require.NoError(t, err)
	require.Nil(t, stored, "a new key runs")
	return c
}

// idempotencyRows returns how many idempotency keys the tenant has.
func (e *env) idempotencyRows(t *testing.T, tenantID uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1`, tenantID).Scan(&n))
	return n
}

func TestCheckIdempotencyKey(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"uuid", uuid.NewString(), true},
		{"255 characters", strings.Repeat("k", 255), true},
		{"printable punctuation", "order-123/retry:1 ~!", true},
		{"empty", "", false},
		{"256 characters", strings.Repeat("k", 256), false},
		{"tab", "order\t1", false},
		{"non-ASCII", "ordre-été", false},
		{"DEL", "order\x7f", false},
		{"a UUID whose digits look like a card number", "42424242-4242-4242-4242-000000000000", true},
		{"a long order number", "order-4242424242424242", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := vault.CheckIdempotencyKey(tt.key)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, vault.KindBadRequest, vault.ErrorKind(err))
			assert.Equal(t, "idempotency_key_invalid", vault.AsError(err).Code)
		})
	}
}

func TestIdempotencyKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	answer := vault.StoredResponse{Status: 201, Body: []byte(`{"id":"tok_1"}`)}

	c := e.begin(t, e.actor, idemReq("k1", `{"a":1}`))
	_, _, err := e.svc.BeginIdempotent(ctx, e.actor, idemReq("k1", `{"a":1}`))
	assert.Equal(t, "idempotency_key_in_use", vault.AsError(err).Code, "while the first runs")
	assert.Equal(t, vault.KindConflict, vault.ErrorKind(err))

	kept, err := e.svc.FinishIdempotent(ctx, c, answer)
	require.NoError(t, err)
	require.True(t, kept)

	_, stored, err := e.svc.BeginIdempotent(ctx, e.actor, idemReq("k1", `{"a":1}`))
	require.NoError(t, err)
	require.NotNil(t, stored, "a retry replays")
	assert.Equal(t, answer, *stored)

	tests := []struct {
		name string
		r    vault.IdempotentRequest
	}{
		{"another body", idemReq("k1", `{"a":2}`)},
		{"another path", vault.IdempotentRequest{Key: "k1", Method: "POST", Path: "/cde-import", Body: []byte(`{"a":1}`)}},
		{"body moved into the path", vault.IdempotentRequest{Key: "k1", Method: "POST", Path: "/tokens\x00{\"a\":", Body: []byte("1}")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stored, err := e.svc.BeginIdempotent(ctx, e.actor, tt.r)
			assert.Nil(t, stored)
			assert.Equal(t, vault.KindIdempotency, vault.ErrorKind(err))
		})
	}

	t.Run("another tenant has its own keys", func(t *testing.T) {
		other := e.otherActor(t)
		e.begin(t, other, idemReq("k1", `{"a":2}`))
	})
	t.Run("an expired key runs anew, even for another body", func(t *testing.T) {
		e.clock.Advance(vault.IdempotencyTTL)
		e.begin(t, e.actor, idemReq("k1", `{"a":3}`))
	})
}

func TestIdempotencyKeyReleaseAndTakeover(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := idemReq("k2", `{}`)

	c1 := e.begin(t, e.actor, r)
	require.NoError(t, e.svc.ReleaseIdempotent(ctx, c1))
	assert.Zero(t, e.idempotencyRows(t, e.actor.TenantID), "a released key leaves no row")

	c2 := e.begin(t, e.actor, r)
	e.clock.Advance(vault.IdempotencyLockTimeout - time.Second)
	_, _, err := e.svc.BeginIdempotent(ctx, e.actor, r)
	require.Equal(t, "idempotency_key_in_use", vault.AsError(err).Code, "the lock still holds")
	_, _, err = e.svc.BeginIdempotent(ctx, e.actor, idemReq("k2", `{"other":1}`))
	require.Equal(t, vault.KindIdempotency, vault.ErrorKind(err), "a lapsed lock is taken over only by the same request")

	e.clock.Advance(time.Second)
	c3 := e.begin(t, e.actor, r)

	kept, err := e.svc.FinishIdempotent(ctx, c2, vault.StoredResponse{Status: 201, Body: []byte(`{"run":2}`)})
	require.NoError(t, err)
	assert.False(t, kept, "the holder whose lock lapsed cannot store over the new holder")
	require.NoError(t, e.svc.ReleaseIdempotent(ctx, c2))
	assert.Equal(t, 1, e.idempotencyRows(t, e.actor.TenantID), "nor release its key")

	kept, err = e.svc.FinishIdempotent(ctx, c3, vault.StoredResponse{Status: 201, Body: []byte(`{"run":3}`)})
	require.NoError(t, err)
	assert.True(t, kept)
}

func TestFinishIdempotentKeepsNoCardData(t *testing.T) {
	const panLikeUUID = "42424242-4242-4242-4242-000000000000"
	require.True(t, card.ContainsPAN(panLikeUUID), "the UUID exception is needed")
	tests := []struct {
		name string
		res  vault.StoredResponse
		kept bool
	}{
		{"masked record", vault.StoredResponse{Status: 201, Body: []byte(`{"masked_account_number":"424242******4242"}`)}, true},
		{"4xx", vault.StoredResponse{Status: 422, Body: []byte(`{"error":{"code":"incorrect_number"}}`)}, true},
		{"no body", vault.StoredResponse{Status: 204}, true},
		{"UUID whose digits look like a PAN", vault.StoredResponse{Status: 201, Body: []byte(`{"id":"` + panLikeUUID + `"}`)}, true},
		{"PAN", vault.StoredResponse{Status: 200, Body: []byte(`{"card":{"number":"4242424242424242"}}`)}, false},
		{"spaced PAN", vault.StoredResponse{Status: 200, Body: []byte(`{"note":"4242 4242 4242 4242"}`)}, false},
		{"500", vault.StoredResponse{Status: 500, Body: []byte(`{}`)}, false},
		{"503", vault.StoredResponse{Status: 503, Body: []byte(`{}`)}, false},
		{"too large", vault.StoredResponse{Status: 201, Body: []byte(`"` + strings.Repeat("x", vault.MaxStoredResponse) + `"`)}, false},
	}
	e := newEnv(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := idemReq("k-"+uuid.NewString(), `{"i":`+string(rune('0'+i))+`}`)
			c := e.begin(t, e.actor, r)
			kept, err := e.svc.FinishIdempotent(ctx, c, tt.res)
			require.NoError(t, err)
			assert.Equal(t, tt.kept, kept)
			_, stored, err := e.svc.BeginIdempotent(ctx, e.actor, r)
			require.NoError(t, err)
			if !tt.kept {
				assert.Nil(t, stored, "a retry runs again")
				return
			}
			require.NotNil(t, stored)
			assert.Equal(t, tt.res.Status, stored.Status)
			assert.Equal(t, string(tt.res.Body), string(stored.Body))
		})
	}
}

func TestPruneIdempotencyKeys(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for _, k := range []string{"old-1", "old-2"} {
		_, err := e.svc.FinishIdempotent(ctx, e.begin(t, e.actor, idemReq(k, `{}`)), vault.StoredResponse{Status: 201, Body: []byte(`{}`)})
		require.NoError(t, err)
	}
	e.clock.Advance(vault.IdempotencyTTL - time.Minute)
	e.begin(t, e.actor, idemReq("young", `{}`))
	e.clock.Advance(time.Minute)

	n, err := e.svc.PruneIdempotencyKeys(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(2))
	assert.Equal(t, 1, e.idempotencyRows(t, e.actor.TenantID), "only the unexpired key is left")
}

func TestStoredAnswersAreSealedWithTheTenantDataKey(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	answer := vault.StoredResponse{Status: 201, Body: []byte(`{"id":"tok_1","cardholder_name":"Jane Q Cardholder"}`)}
	kept, err := e.svc.FinishIdempotent(ctx, e.begin(t, e.actor, idemReq("sealed", `{}`)), answer)
	require.NoError(t, err)
	require.True(t, kept)

	var plain, sealed []byte
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT response_body, response_ct FROM idempotency_keys WHERE tenant_id = $1`,
		e.actor.TenantID).Scan(&plain, &sealed))
	assert.Nil(t, plain, "no answer in clear")
	assert.NotContains(t, string(sealed), "Jane Q Cardholder")
	_, stored, err := e.svc.BeginIdempotent(ctx, e.actor, idemReq("sealed", `{}`))
	require.NoError(t, err)
	require.NotNil(t, stored)
	assert.Equal(t, answer, *stored, "the retry replays the opened answer")

	_, err = e.pool.Exec(ctx, `UPDATE idempotency_keys SET tenant_id = $2 WHERE tenant_id = $1`, e.actor.TenantID, e.otherActor(t).TenantID)
	require.Error(t, err, "a stored answer cannot move to another tenant: its sealing key is not that tenant's")
}

func TestStoredAnswersAreReencryptedAndHoldTheirKeyAgainstRetire(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	answer := vault.StoredResponse{Status: 201, Body: []byte(`{"cardholder_name":"John Doe"}`)}
	_, err := e.svc.FinishIdempotent(ctx, e.begin(t, e.actor, idemReq("rotate", `{}`)), answer)
	require.NoError(t, err)
	oldKey := keyByState(e.keyStatus(t), "primary").KeyID
	_, err = e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	err = e.svc.RetireDataKey(ctx, e.actor, oldKey, false)
	assert.Equal(t, vault.CodeKeyInUse, vault.AsError(err).Code, "an answer still needs the old key: %v", err)

	job, _, err := e.svc.StartReencrypt(ctx, e.actor)
	require.NoError(t, err)
	_, err = e.svc.RunOneKeyJob(ctx, "worker", job.ID)
	require.NoError(t, err)
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, oldKey, false), "re-sealed: the old key can go")
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, oldKey, true))
	_, stored, err := e.svc.BeginIdempotent(ctx, e.actor, idemReq("rotate", `{}`))
	require.NoError(t, err)
	require.NotNil(t, stored)
	assert.Equal(t, answer, *stored, "the answer opens under the new key")
}
