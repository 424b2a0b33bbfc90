package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// rotateAndReencrypt rotates the tenant's data key with no propagation wait
// (as the test server does), runs the re-encryption job to the end, and
// returns the old and the new primary key ids.
func (e *env) rotateAndReencrypt(t *testing.T) (uint32, uint32) {
	t.Helper()
	ctx := context.Background()
	old := keyByState(e.keyStatus(t), "primary").KeyID
	added, err := e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	e.reencrypt(t)
	return old, added
}

// reencrypt runs a re-encryption job of the tenant to the end.
func (e *env) reencrypt(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	job, _, err := e.svc.StartReencrypt(ctx, e.actor)
	require.NoError(t, err)
	ran, err := e.svc.RunOneKeyJob(ctx, "worker", job.ID)
	require.NoError(t, err)
	require.True(t, ran)
}

// rowsUnderKey counts the tenant's tokens, webhook rows and active imports'
// credentials sealed with keyID, straight from the tables.
func (e *env) rowsUnderKey(t *testing.T, keyID uint32) int64 {
	t.Helper()
	var n int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM tokens WHERE tenant_id = $1 AND key_id = $2) +
		(SELECT count(*) FROM webhooks WHERE tenant_id = $1 AND key_id = $2) +
		(SELECT count(*) FROM webhook_events WHERE tenant_id = $1 AND key_id = $2
		   AND delivered_at IS NULL AND given_up_at IS NULL) +
		(SELECT count(*) FROM import_jobs WHERE tenant_id = $1 AND status IN ('preparing', 'running')
		   AND (substring(provider_key_ct FROM 2 FOR 4) = substring(int8send($2::bigint) FROM 5 FOR 4) OR substring(forward_key_ct FROM 2 FOR 4) = substring(int8send($2::bigint) FROM 5 FOR 4)))`,
		e.actor.TenantID, int64(keyID)).Scan(&n))
	return n
}

// staleReplica returns another vault process of the test's database (a
// replica) whose cache holds the tenant's keys as they are now, and its
// actor, and the token it made to load them.
func (e *env) staleReplica(t *testing.T) (*postgres.Service, vault.Actor, vault.Token) {
	t.Helper()
	replica := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	ra := vaulttest.Actor(t, replica, e.secret)
	tok, _, err := replica.Tokenize(context.Background(), ra, visa("stale-1"))
	require.NoError(t, err, "the replica loads the tenant's keys")
	return replica, ra, tok
}

// assertReveals checks that the token opens to number through svc.
func assertReveals(t *testing.T, svc *postgres.Service, a vault.Actor, id uuid.UUID, number string) {
	t.Helper()
	r, err := svc.Detokenize(context.Background(), a, id, "")
	require.NoError(t, err, "the token opens")
	require.Equal(t, number, r.Card.PAN.Reveal())
}

// TestASealHeldAcrossRotationAndRetireCommitsUnderTheCurrentKey is the race
// behind the flaky TestRotationUnderLoad: a request seals the card with the
// old primary, and its token row is committed only after the rotation, the
// re-encryption job and the retire of that key. The database refuses the
// row, and the request seals it again with the current primary, so the
// token opens and no row is left under the retired key.
func TestASealHeldAcrossRotationAndRetireCommitsUnderTheCurrentKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/hooks")
	require.NoError(t, err)
	pending, err := postgres.SealToken(ctx, e.svc, e.actor, visa(""))
	require.NoError(t, err)
	old, added := e.rotateAndReencrypt(t)
	require.Equal(t, old, pending.KeyID(), "sealed with the key about to be retired")
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old, false), "no committed row uses the old key")

	tok, err := pending.Commit()
	require.NoError(t, err)
	assertReveals(t, e.svc, e.actor, tok.ID, "4242424242424242")
	assert.Zero(t, e.rowsUnderKey(t, old), "nothing under the retired key, the token.created event included")
	var keyID int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT key_id FROM tokens WHERE id = $1`, tok.ID).Scan(&keyID))
	assert.Equal(t, int64(added), keyID)
	assert.Equal(t, int64(1), e.rowsUnderKey(t, added)-2, "the token and its event (besides the webhook secret) under the new key")
}

// TestAStaleReplicaTokenizesUnderTheCurrentKeyAfterARetire: another replica
// whose key cache predates the rotation (no propagation wait, no refresh)
// tokenizes after the old key was retired; the database refuses its seal and
// it reloads the tenant's keys and seals again.
func TestAStaleReplicaTokenizesUnderTheCurrentKeyAfterARetire(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	replica, ra, first := e.staleReplica(t)
	old, _ := e.rotateAndReencrypt(t)
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old, false))

	in := visa("stale-2")
	in.Card.Number = "5555555555554444"
	tok, created, err := replica.Tokenize(ctx, ra, in)
	require.NoError(t, err)
	require.True(t, created)
	for _, svc := range []*postgres.Service{e.svc, replica} {
		assertReveals(t, svc, e.actor, tok.ID, "5555555555554444")
		assertReveals(t, svc, e.actor, first.ID, "4242424242424242")
	}
	assert.Zero(t, e.rowsUnderKey(t, old))
}

// TestRetireWaitsForAWriterUnderWayAndRefuses: a writer (a token row, an
// import's credentials) whose statement wrote a row sealed with the old key
// has run but not committed when the retire comes (another replica's
// request, say). The retire waits for it, then finds its row and refuses
// with key_in_use; the key stays enabled, the row opens, and re-running the
// re-encryption lets the retire through.
func TestRetireWaitsForAWriterUnderWayAndRefuses(t *testing.T) {
	tests := []struct {
		name  string
		stale staleWriter
	}{
		{"token", staleToken},
		{"import credentials", staleImportCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			write, check := tt.stale(t, e)
			old, _ := e.rotateAndReencrypt(t)
			tx, err := e.pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
			write(tx)

			retired := make(chan error, 1)
			go func() { retired <- e.svc.RetireDataKey(ctx, e.actor, old, false) }()
			waitForLockWait(t, e.pool, "DELETE FROM tenant_sealing_keys%")
			require.NoError(t, tx.Commit(ctx))
			err = <-retired
			require.Equal(t, vault.KindConflict, vault.ErrorKind(err), "%v", err)
			require.Equal(t, "key_in_use", vault.AsError(err).Code)
			require.Contains(t, vault.AsError(err).Message, "re-run reencrypt")
			assert.Equal(t, "active", keyByID(e.keyStatus(t), old).State, "the refused retire left the key enabled")
			check()

			e.reencrypt(t)
			require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old, false))
			assert.Zero(t, e.rowsUnderKey(t, old))
			check()
		})
	}
}

// staleWriter prepares, under the tenant's current primary key, a row that
// write (run after the rotation) stores in tx as a stale writer would;
// check verifies the row still opens.
type staleWriter func(t *testing.T, e *env) (write func(tx pgx.Tx), check func())

// staleToken is a tokenize request sealed before the rotation.
func staleToken(t *testing.T, e *env) (func(pgx.Tx), func()) {
	ctx := context.Background()
	pending, err := postgres.SealToken(ctx, e.svc, e.actor, visa(""))
	require.NoError(t, err)
	var tok vault.Token
	return func(tx pgx.Tx) {
			tok, err = pending.InsertIn(ctx, tx)
			require.NoError(t, err)
		}, func() {
			assertReveals(t, e.svc, e.actor, tok.ID, "4242424242424242")
		}
}

// staleImportCredentials is an import's credentials as sealed before the
// rotation, written back by a writer that missed the re-encryption.
func staleImportCredentials(t *testing.T, e *env) (func(pgx.Tx), func()) {
	ctx := context.Background()
	job, err := e.svc.CreateImport(ctx, e.actor, vault.CreateImportInput{
		Provider: vault.ProviderStripe, StripeAPIKey: card.NewSecret("sk_test_staleWriter")})
	require.NoError(t, err)
	var ct []byte
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT provider_key_ct FROM import_jobs WHERE id = $1`, job.ID).Scan(&ct))
	return func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, `UPDATE import_jobs SET provider_key_ct = $2 WHERE id = $1`, job.ID, ct)
			require.NoError(t, err)
		}, func() {
			creds, err := e.svc.Credentials(ctx, job.ID)
			require.NoError(t, err)
			require.Equal(t, "sk_test_staleWriter", creds.ProviderKey.Reveal())
		}
}

// keyByID returns the key version id of st.
func keyByID(st vault.TenantKeyStatus, id uint32) vault.KeyVersion {
	for _, k := range st.Keys {
		if k.KeyID == id {
			return k
		}
	}
	return vault.KeyVersion{}
}

// waitForLockWait returns once a backend of the test database runs a
// statement like pattern and waits for a lock.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool, pattern string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`, pattern).Scan(&n)
		return err == nil && n > 0
	}, 10*time.Second, 2*time.Millisecond, "the retire waits for the writer's lock")
}

// TestAStaleReplicaCannotSealSideRowsUnderARetiredKey: the webhook secret
// and an import's credentials written by a replica whose keys predate the
// retire are refused as retryable (503), never stored under the retired
// key; the refusal drops the replica's stale keys, so the retry succeeds.
func TestAStaleReplicaCannotSealSideRowsUnderARetiredKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	replica, ra, _ := e.staleReplica(t)
	other, oa, _ := e.staleReplica(t)
	old, _ := e.rotateAndReencrypt(t)
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old, false))

	_, err := replica.CreateImport(ctx, ra, vault.CreateImportInput{
		Provider: vault.ProviderStripe, StripeAPIKey: card.NewSecret("sk_test_staleReplica")})
	assert.Equal(t, vault.KindUnavailable, vault.ErrorKind(err), "a stale CreateImport is refused as retryable: %v", err)
	_, err = replica.CreateImport(ctx, ra, vault.CreateImportInput{
		Provider: vault.ProviderStripe, StripeAPIKey: card.NewSecret("sk_test_staleReplica")})
	require.NoError(t, err, "the retry seals with the reloaded keys")
	_, _, err = other.SetWebhook(ctx, oa, "https://hooks.example.com/hooks")
	assert.Equal(t, vault.KindUnavailable, vault.ErrorKind(err), "a stale SetWebhook is refused as retryable: %v", err)
	_, _, err = other.SetWebhook(ctx, oa, "https://hooks.example.com/hooks")
	require.NoError(t, err, "the retry seals with the reloaded keys")
	assert.Zero(t, e.rowsUnderKey(t, old), "no side row under the retired key")
}

// TestAStaleReplicaOpensATokenReencryptedUnderAKeyItHasNotLoaded: a replica
// whose keys predate the rotation reveals a token the re-encryption job
// moved to the new key (the test server waits no propagation delay); it
// reloads the tenant's keys instead of failing the request.
func TestAStaleReplicaOpensATokenReencryptedUnderAKeyItHasNotLoaded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	replica, ra, tok := e.staleReplica(t)
	_, added := e.rotateAndReencrypt(t)
	var keyID int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT key_id FROM tokens WHERE id = $1`, tok.ID).Scan(&keyID))
	require.Equal(t, int64(added), keyID, "re-encrypted under the key the replica has not loaded")
	assertReveals(t, replica, ra, tok.ID, "4242424242424242")
}
