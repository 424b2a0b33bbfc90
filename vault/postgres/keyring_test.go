package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// kekEnv is a service whose root KEK the test switches, with a settable
// clock and a one-hour key cache.
type kekEnv struct {
	svc   *postgres.Service
	pool  *pgxpool.Pool
	kek   *vaulttest.SwitchableKEK
	clock *vaulttest.Clock
}

const testKeyCacheTTL = time.Hour

func newKEKEnv(t *testing.T) *kekEnv {
	t.Helper()
	e := &kekEnv{kek: vaulttest.NewSwitchableKEK(t), clock: vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))}
	e.pool = vaulttest.Pool(t, dbURL)
	svc, err := postgres.NewService(postgres.Config{Pool: e.pool, KEK: e.kek, Now: e.clock.Now,
		KeyCacheTTL: testKeyCacheTTL, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	e.svc = svc
	return e
}

// tenant returns an actor of a fresh tenant (created while the KEK is up).
// The tenant is shredded when the test ends: its keysets are wrapped by this
// test's KEK, not the package's, and must not trouble later tests that walk
// every tenant.
func (e *kekEnv) tenant(t *testing.T) vault.Actor {
	t.Helper()
	id, secret := vaulttest.Tenant(t, e.svc)
	t.Cleanup(func() {
		if _, err := e.svc.DestroyTenant(context.Background(), id); err != nil {
			t.Errorf("shredding the test tenant: %v", err)
		}
		// Its audit chain key outlives the shred (the trail stays
		// verifiable), wrapped by this test's KEK: remove the chain too.
		for _, q := range []string{`DELETE FROM audit_events WHERE tenant_id = $1`, `DELETE FROM audit_lanes WHERE chain_id = $1`,
			`DELETE FROM audit_checkpoints WHERE chain_id = $1`, `DELETE FROM audit_verified WHERE chain_id = $1`,
			`DELETE FROM audit_chain_keys WHERE chain_id = $1`} {
			if _, err := e.pool.Exec(context.Background(), q, id); err != nil {
				t.Errorf("removing the test tenant's audit chain: %v", err)
			}
		}
	})
	return vaulttest.Actor(t, e.svc, secret)
}

func tokenInput(i int) vault.TokenizeInput {
	return vault.TokenizeInput{Card: card.CardInput{Number: vaulttest.LuhnNumber("424242", 16, i), ExpMonth: "04", ExpYear: "2033"}}
}

// use tokenizes card i, reads and detokenizes it, and returns the first
// error.
func (e *kekEnv) use(ctx context.Context, a vault.Actor, i int) error {
	tok, _, err := e.svc.Tokenize(ctx, a, tokenInput(i))
	if err != nil {
		return err
	}
	if _, err := e.svc.GetToken(ctx, a, tok.ID); err != nil {
		return err
	}
	r, err := e.svc.Detokenize(ctx, a, tok.ID, "test")
	if err != nil {
		return err
	}
	if r.Card.PAN.Reveal() != tokenInput(i).Card.Number {
		return errors.New("detokenize returned another card")
	}
	return nil
}

func TestKeyCacheServesWithinItsTTLAndNeverPastIt(t *testing.T) {
	e := newKEKEnv(t)
	a := e.tenant(t)
	ctx := context.Background()
	require.NoError(t, e.use(ctx, a, 0), "first use loads the tenant's keys")
	steps := []struct {
		name      string
		advance   time.Duration
		kekDown   bool
		wantCode  string // "" for success
		wantCalls int64  // KEK calls the step makes (a failed unwrap stops at the first keyset, then one probe tells an outage from a wrong KEK)
	}{
		{"KEK down within the TTL: cached keys serve", 59 * time.Minute, true, "", 0},
		{"TTL over and KEK down: 503, no fallback", 2 * time.Minute, true, "kek_unavailable", 2},
		{"still down: the expired keys are gone for good", 0, true, "kek_unavailable", 2},
		{"KEK back: keys unwrapped again, once", time.Minute, false, "", 2},
		{"within the new TTL: no KEK call", 59 * time.Minute, false, "", 0},
		{"KEK down again within the new TTL: still serving", 0, true, "", 0},
	}
	for i, st := range steps {
		e.clock.Advance(st.advance)
		e.kek.Down.Store(st.kekDown)
		before, tokens := e.kek.Calls.Load(), e.countTokens(t, a)
		err := e.use(ctx, a, i+1)
		if st.wantCode == "" {
			assert.NoError(t, err, st.name)
		} else {
			require.Error(t, err, st.name)
			ve := vault.AsError(err)
			assert.Equal(t, vault.KindUnavailable, ve.Kind, st.name)
			assert.Equal(t, st.wantCode, ve.Code, st.name)
			assert.NotContains(t, err.Error(), tokenInput(i+1).Card.Number, st.name)
			assert.Equal(t, tokens, e.countTokens(t, a), "%s: nothing stored without the keys", st.name)
		}
		assert.Equal(t, st.wantCalls, e.kek.Calls.Load()-before, "%s: KEK calls", st.name)
	}
}

func TestATenantNotYetLoadedIsUnavailableWhileTheKEKIsDown(t *testing.T) {
	e := newKEKEnv(t)
	loaded, cold := e.tenant(t), e.tenant(t)
	ctx := context.Background()
	require.NoError(t, e.use(ctx, loaded, 0))
	e.kek.Down.Store(true)
	assert.NoError(t, e.use(ctx, loaded, 1), "a loaded tenant keeps serving")
	err := e.use(ctx, cold, 2)
	assert.Equal(t, "kek_unavailable", vault.AsError(err).Code)
	e.kek.Down.Store(false)
	assert.NoError(t, e.use(ctx, cold, 3))
}

func TestRequestsAtExpiryShareOneUnwrap(t *testing.T) {
	e := newKEKEnv(t)
	a := e.tenant(t)
	ctx := context.Background()
	require.NoError(t, e.use(ctx, a, 0))
	e.clock.Advance(testKeyCacheTTL + time.Second)
	before := e.kek.Calls.Load()
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = e.svc.Tokenize(ctx, a, tokenInput(100+i))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(2), e.kek.Calls.Load()-before, "one unwrap of the data and fingerprint keysets for all %d requests", n)
}

// countTokens returns how many token rows the actor's tenant holds.
func (e *kekEnv) countTokens(t *testing.T, a vault.Actor) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM tokens WHERE tenant_id = $1`, a.TenantID).Scan(&n))
	return n
}
