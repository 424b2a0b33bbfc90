package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// seed stores n distinct cards and returns their ids and numbers.
func (e *env) seed(t *testing.T, n int) map[uuid.UUID]string {
	t.Helper()
	out := make(map[uuid.UUID]string, n)
	for i := range n {
		in := visa(fmt.Sprintf("pm_seed_%d", i))
		in.Card.Number = vaulttest.LuhnNumber("411111", 16, i)
		tok, _ := e.tokenize(t, in)
		out[tok.ID] = in.Card.Number
	}
	return out
}

// seedRotated seeds n cards, rotates the tenant's data key and starts the
// re-encryption job, which it returns pending with the cards.
func (e *env) seedRotated(t *testing.T, n int) (map[uuid.UUID]string, vault.KeyJob) {
	t.Helper()
	cards := e.seed(t, n)
	_, err := e.svc.RotateDataKey(context.Background(), e.actor, 0)
	require.NoError(t, err)
	job, _, err := e.svc.StartReencrypt(context.Background(), e.actor)
	require.NoError(t, err)
	return cards, job
}

// status returns the tenant's key versions by state.
func (e *env) keyStatus(t *testing.T) vault.TenantKeyStatus {
	t.Helper()
	st, err := e.svc.KeyStatus(context.Background(), e.actor.TenantID, 365*24*time.Hour)
	require.NoError(t, err)
	return st
}

func keyByState(st vault.TenantKeyStatus, state string) vault.KeyVersion {
	for _, k := range st.Keys {
		if k.State == state {
			return k
		}
	}
	return vault.KeyVersion{}
}

// assertAllReveal checks every token still opens to its original number.
func (e *env) assertAllReveal(t *testing.T, cards map[uuid.UUID]string) {
	t.Helper()
	for id, number := range cards {
		r, err := e.svc.Detokenize(context.Background(), e.actor, id, "")
		require.NoError(t, err)
		require.Equal(t, number, r.Card.PAN.Reveal())
	}
}

func TestRotateReencryptRetireDestroy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards := e.seed(t, 40)
	old := keyByState(e.keyStatus(t), "primary")
	require.Equal(t, int64(40), old.Tokens)

	newID, err := e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	st := e.keyStatus(t)
	assert.Equal(t, newID, keyByState(st, "primary").KeyID)
	assert.Equal(t, old.KeyID, keyByState(st, "active").KeyID, "the old key keeps decrypting")
	e.assertAllReveal(t, cards)

	in := visa("pm_after_rotation")
	tok, _ := e.tokenize(t, in)
	cards[tok.ID] = in.Card.Number
	assert.Equal(t, int64(1), keyByState(e.keyStatus(t), "primary").Tokens, "new tokens use the new key")

	err = e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false)
	assert.Equal(t, vault.KindConflict, vault.ErrorKind(err), "retiring a key still in use is refused")
	assert.Contains(t, vault.AsError(err).Message, "still protects 40 tokens")

	job, created, err := e.svc.StartReencrypt(ctx, e.actor)
	require.NoError(t, err)
	require.True(t, created)
	assert.Equal(t, int64(40), job.Total)
	ran, err := e.svc.RunOneKeyJob(ctx, "worker-1", job.ID)
	require.NoError(t, err)
	require.True(t, ran)
	job, err = e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", job.Status)
	assert.Equal(t, int64(40), job.Done)
	assert.Equal(t, int64(0), keyByState(e.keyStatus(t), "active").Tokens)
	e.assertAllReveal(t, cards)

	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false))
	assert.Equal(t, old.KeyID, keyByState(e.keyStatus(t), "disabled").KeyID)
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, true))
	assert.Equal(t, old.KeyID, keyByState(e.keyStatus(t), "destroyed").KeyID)
	e.assertAllReveal(t, cards)

	err = e.svc.RetireDataKey(ctx, e.actor, newID, false)
	assert.Equal(t, vault.KindConflict, vault.ErrorKind(err), "the primary cannot be retired")
	assert.Equal(t, "key_is_primary", vault.AsError(err).Code, "rotating, not re-encrypting, frees the primary of its tokens")
	assert.Contains(t, vault.AsError(err).Message, "rotate first")
	for _, a := range []string{"key.add", "key.promote", "key.reencrypt", "key.disable", "key.destroy"} {
		var n int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = $2`,
			e.actor.TenantID, a).Scan(&n))
		assert.Positive(t, n, a)
	}
}

func TestReencryptResumesAfterTheWorkerStops(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards, job := e.seedRotated(t, 2000) // four batches

	// Stop the first worker as soon as it has done one batch.
	stopCtx, stop := context.WithCancel(ctx)
	go func() {
		for {
			j, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
			if err != nil || j.Done > 0 {
				stop()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := e.svc.RunOneKeyJob(stopCtx, "worker-1", job.ID)
	require.ErrorIs(t, err, context.Canceled)
	mid, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	require.Equal(t, "running", mid.Status)
	require.Less(t, mid.Done, int64(2000), "stopped mid-job")

	ran, err := e.svc.RunOneKeyJob(ctx, "worker-2", job.ID)
	require.NoError(t, err)
	require.True(t, ran, "a released job is claimable at once")
	done, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", done.Status)
	assert.Equal(t, int64(2000), done.Done, "no token re-encrypted twice")
	assert.Equal(t, int64(0), keyByState(e.keyStatus(t), "active").Tokens)
	e.assertAllReveal(t, cards)
}

func TestReencryptWithTwoWorkersAndConcurrentImports(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards, job := e.seedRotated(t, 1500)

	// Two processes: two services with their own pools and key caches, and
	// one clock (with its own, worker-b found worker-a's lease, set by the
	// test clock weeks behind, expired and took the job too).
	other := vaulttest.NewService(t, dbURL, vaulttest.Options{Now: e.clock.Now, CVCTTL: time.Hour})
	processes := map[string]*postgres.Service{"worker-a": e.svc, "worker-b": other}
	var wg sync.WaitGroup
	var claimed atomic.Int32
	for w, svc := range processes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ran, err := svc.RunOneKeyJob(ctx, w, job.ID)
			assert.NoError(t, err)
			if ran {
				claimed.Add(1)
			}
		}()
	}
	// Meanwhile the account updater changes some cards.
	updated := map[uuid.UUID]string{}
	for i := 0; i < 30; i++ {
		in := visa(fmt.Sprintf("pm_seed_%d", i))
		in.Card.Number = vaulttest.LuhnNumber("555555", 16, i)
		tok, created := e.tokenize(t, in)
		require.False(t, created)
		updated[tok.ID] = in.Card.Number
	}
	wg.Wait()
	assert.Equal(t, int32(1), claimed.Load(), "one lease, one worker")
	done, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", done.Status)
	assert.LessOrEqual(t, done.Done, int64(1500), "each token re-encrypted at most once")
	assert.Equal(t, int64(0), keyByState(e.keyStatus(t), "active").Tokens)
	for id, n := range updated {
		cards[id] = n
	}
	e.assertAllReveal(t, cards) // the imports' updates were kept
}

func TestRotateRootKEK(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards := e.seed(t, 5)
	newKEK, newURI := vaulttest.KEK(t)

	dry, err := e.svc.RotateRootKEK(ctx, newKEK, newURI, true)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, dry.Keysets, 2)

	r, err := e.svc.RotateRootKEK(ctx, newKEK, newURI, false)
	require.NoError(t, err)
	assert.Equal(t, dry.Keysets, r.Keysets)
	again, err := e.svc.RotateRootKEK(ctx, newKEK, newURI, false)
	require.NoError(t, err)
	assert.Zero(t, again.Keysets, "a second run finds everything done")
	assert.Equal(t, r.Keysets, again.Already)
	assert.Positive(t, r.AuditKeys, "the audit chain keys are re-wrapped too")
	assert.Equal(t, dry.AuditKeys, r.AuditKeys)
	assert.Zero(t, again.AuditKeys)

	withNew := vaulttest.NewService(t, dbURL, vaulttest.Options{KEK: newKEK})
	for id, number := range cards {
		rv, err := withNew.Detokenize(ctx, e.actor, id, "")
		require.NoError(t, err)
		assert.Equal(t, number, rv.Card.PAN.Reveal())
	}
	report, err := withNew.VerifyAudit(ctx, &e.actor.TenantID)
	require.NoError(t, err, "the new KEK opens the chain key")
	assert.True(t, report.OK, "breaks: %+v", report.Breaks)
	withOld := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	_, err = withOld.GetToken(ctx, e.actor, keysOf(cards)[0])
	assert.Equal(t, vault.KindMisconfigured, vault.ErrorKind(err), "the old KEK no longer opens the keysets")
	assert.Equal(t, vault.CodeKEKMismatch, vault.AsError(err).Code, "a working KEK that cannot decrypt is a mismatch, not an outage")
}

func keysOf(m map[uuid.UUID]string) []uuid.UUID {
	var out []uuid.UUID
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDestroyTenantShredsOnlyThatTenant(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mine := e.seed(t, 3)
	other := e.otherActor(t)
	theirs, _, err := e.svc.Tokenize(ctx, other, visa("pm_other"))
	require.NoError(t, err)

	n, err := e.svc.DestroyTenant(ctx, e.actor.TenantID)
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	for id := range mine {
		_, err := e.svc.GetToken(ctx, e.actor, id)
		assert.Error(t, err)
	}
	var left int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM tokens WHERE tenant_id = $1) +
		(SELECT count(*) FROM tenant_keysets WHERE tenant_id = $1)`, e.actor.TenantID).Scan(&left))
	assert.Zero(t, left, "tokens and keysets are gone")
	_, err = e.svc.Authenticate(ctx, e.secret, "", "")
	assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err), "the tenant's API keys are revoked")
	var audit int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1`, e.actor.TenantID).Scan(&audit))
	assert.Greater(t, audit, 3, "the audit trail stays")
	report, err := e.svc.VerifyAudit(ctx, &e.actor.TenantID)
	require.NoError(t, err)
	assert.True(t, report.OK, "the shredded tenant's trail still verifies: its chain key is kept: %+v", report.Breaks)
	_, err = e.svc.DestroyTenant(ctx, e.actor.TenantID)
	assert.Equal(t, vault.KindNotFound, vault.ErrorKind(err))

	r, err := e.svc.Detokenize(ctx, other, theirs.ID, "")
	require.NoError(t, err, "other tenants are untouched")
	assert.Equal(t, "4242424242424242", r.Card.PAN.Reveal())
}

func TestKeyUsageIsCounted(t *testing.T) {
	e := newEnv(t)
	e.seed(t, 4) // PAN, name and CVC each: 12 encryptions
	require.NoError(t, e.svc.FlushKeyUsage(context.Background()))
	assert.Equal(t, int64(12), keyByState(e.keyStatus(t), "primary").Encryptions)
}

func TestEveryReplicaEncryptsWithTheNewKeyAfterRotation(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replica := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	defer loop.Start(loop.Every(slog.New(slog.DiscardHandler), "key refresh", 50*time.Millisecond, replica.RefreshKeys))()
	before, _, err := replica.Tokenize(ctx, e.actor, visa("pm_replica_before"))
	require.NoError(t, err)

	newID, err := e.svc.RotateDataKey(ctx, e.actor, 150*time.Millisecond) // three refresh intervals
	require.NoError(t, err)
	after, _, err := replica.Tokenize(ctx, e.actor, visa("pm_replica_after"))
	require.NoError(t, err)
	var beforeKey, afterKey int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT (SELECT key_id FROM tokens WHERE id = $1), (SELECT key_id FROM tokens WHERE id = $2)`,
		before.ID, after.ID).Scan(&beforeKey, &afterKey))
	assert.NotEqual(t, int64(newID), beforeKey)
	assert.Equal(t, int64(newID), afterKey, "the other replica picked up the rotation without a restart")
	r, err := replica.Detokenize(ctx, e.actor, before.ID, "")
	require.NoError(t, err, "old versions keep decrypting")
	assert.Equal(t, "4242424242424242", r.Card.PAN.Reveal())
}

// BenchmarkReencrypt re-encrypts a table of 100,000 tokens (one rotation
// and one full job per iteration) and reports tokens per second.
func BenchmarkReencrypt(b *testing.B) {
	const n = 100_000
	svc := vaulttest.NewService(b, dbURL, vaulttest.Options{})
	_, secret := vaulttest.Tenant(b, svc)
	a := vaulttest.Actor(b, svc, secret)
	ctx := context.Background()
	seedConcurrently(b, svc, a, n)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		_, err := svc.RotateDataKey(ctx, a, 0)
		require.NoError(b, err)
		job, _, err := svc.StartReencrypt(ctx, a)
		require.NoError(b, err)
		b.StartTimer()
		_, err = svc.RunOneKeyJob(ctx, "bench", job.ID)
		require.NoError(b, err)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func seedConcurrently(b *testing.B, svc *postgres.Service, a vault.Actor, n int) {
	b.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				in := vault.TokenizeInput{Card: card.CardInput{Number: vaulttest.LuhnNumber("400000", 16, i),
					ExpMonth: "1", ExpYear: "2030", CVC: "123", Name: "Bench Holder"}}
				if _, _, err := svc.Tokenize(context.Background(), a, in); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestAKilledWorkersJobIsResumedWhenItsLeaseRunsOut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards, job := e.seedRotated(t, 30)
	// A worker took the job and was SIGKILLed: its lease stays behind.
	_, err := e.pool.Exec(ctx, `UPDATE key_jobs SET status = 'running', lease_owner = 'killed', lease_expires_at = $2 WHERE id = $1`,
		job.ID, e.clock.Now().Add(postgres.DefaultLeaseTTL))
	require.NoError(t, err)

	ran, err := e.svc.RunOneKeyJob(ctx, "survivor", job.ID)
	require.NoError(t, err)
	assert.False(t, ran, "a live lease is respected")
	e.clock.Advance(postgres.DefaultLeaseTTL + time.Second)
	ran, err = e.svc.RunOneKeyJob(ctx, "survivor", job.ID)
	require.NoError(t, err)
	require.True(t, ran, "an expired lease is taken over")
	done, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", done.Status)
	assert.Equal(t, int64(30), done.Done)
	e.assertAllReveal(t, cards)
}

func TestOneRotationPerTenantAtATime(t *testing.T) {
	e := newEnv(t)
	other := e.otherActor(t)
	replica := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan error, 1)
	go func() { _, err := e.svc.RotateDataKey(ctx, e.actor, time.Hour); running <- err }()
	require.Eventually(t, func() bool { // the first rotation holds its lock and has added its key, waiting for the replicas
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			int64(0x6b657972)).Scan(&n)
		if err != nil || n != 1 {
			return false
		}
		st, err := e.svc.KeyStatus(context.Background(), e.actor.TenantID, 365*24*time.Hour)
		return err == nil && len(st.Keys) == 2
	}, 10*time.Second, 5*time.Millisecond)

	tests := []struct {
		name string
		svc  *postgres.Service
		a    vault.Actor
		code string // "" when it runs
	}{
		{"the same tenant in this process", e.svc, e.actor, vault.CodeRotationInProgress},
		{"the same tenant on another replica", replica, e.actor, vault.CodeRotationInProgress},
		{"another tenant", e.svc, other, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.svc.RotateDataKey(context.Background(), tt.a, 0)
			if tt.code == "" {
				require.NoError(t, err)
				return
			}
			assert.Equal(t, vault.KindConflict, vault.ErrorKind(err))
			assert.Equal(t, tt.code, vault.AsError(err).Code)
		})
	}
	assert.Len(t, e.keyStatus(t).Keys, 2, "the first key and the running rotation's: the refused ones added none")
	cancel()
	require.ErrorIs(t, <-running, context.Canceled)
	_, err := e.svc.RotateDataKey(context.Background(), e.actor, 0)
	require.NoError(t, err, "the lock is given back when the rotation ends")
	assert.Len(t, e.keyStatus(t).Keys, 3)
}

// TestAWorkerResumesItsOwnJobAfterAnError: a run that stopped on an error
// (the database failing over mid-batch) leaves its lease behind; the same
// worker resumes at its next poll, another one waits for the lease.
func TestAWorkerResumesItsOwnJobAfterAnError(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cards, job := e.seedRotated(t, 30)
	_, err := e.pool.Exec(ctx, `UPDATE key_jobs SET status = 'running', lease_owner = 'worker-1', lease_expires_at = $2 WHERE id = $1`,
		job.ID, e.clock.Now().Add(postgres.DefaultLeaseTTL))
	require.NoError(t, err)

	for _, tt := range []struct {
		owner   string
		wantRan bool
	}{{"worker-2", false}, {"worker-1", true}} {
		ran, err := e.svc.RunOneKeyJob(ctx, tt.owner, job.ID)
		require.NoError(t, err)
		assert.Equal(t, tt.wantRan, ran, tt.owner)
	}
	done, err := e.svc.GetKeyJob(ctx, e.actor.TenantID, job.ID)
	require.NoError(t, err)
	assert.Equal(t, "finished", done.Status)
	assert.Equal(t, int64(30), done.Done)
	e.assertAllReveal(t, cards)
}
