package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// ownDatabase returns the URL of a fresh migrated database, dropped when t
// ends: the test re-wraps every tenant keyset it holds, which the package
// database shares with other tests.
func ownDatabase(t *testing.T) string {
	t.Helper()
	url, cleanup, err := vaulttest.NewDatabase(context.Background(), "httpapi_kek")
	require.NoError(t, err)
	t.Cleanup(cleanup)
	return url
}

// replica is one vault process serving HTTP with its own root KEK.
type replica struct {
	*testServer
	kekURI string
}

// newReplica starts a server over db whose root KEK is kek (named uri).
func newReplica(t *testing.T, db string, kek tink.AEAD, uri string, clock *vaulttest.Clock) replica {
	t.Helper()
	r := replica{testServer: &testServer{clock: clock, log: &lockedBuffer{}}, kekURI: uri}
	logger := slog.New(slog.NewJSONHandler(r.log, nil))
	r.svc = vaulttest.NewService(t, db, vaulttest.Options{KEK: kek, Now: clock.Now, Logger: logger})
	r.serve(t, httpapi.New(r.svc, logger, httpapi.WithKeyConfig(httpapi.KeyConfig{RootKEKURI: uri}),
		httpapi.WithLimits(httpapi.Limits{Now: clock.Now}))) // the readiness cache runs on the test clock too
	return r
}

// assertKEKMismatch checks a configuration-error answer: 503 kek_mismatch,
// no Retry-After, a message that says what is wrong and not to retry.
func assertKEKMismatch(t *testing.T, res response, what string) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, res.status, "%s: %s", what, res.body)
	assert.Empty(t, res.header.Get("Retry-After"), "%s: a retry does not help", what)
	e := errorOf(t, res)
	assert.Equal(t, vault.CodeKEKMismatch, e["code"], what)
	assert.Equal(t, "api_error", e["type"], what)
	assert.Contains(t, e["message"], "root KEK cannot open", what)
	assert.NotContains(t, e["message"], "retry later", what)
}

// kekMaterial returns the key value of the local KEK file uri names.
func kekMaterial(t *testing.T, uri string) string {
	t.Helper()
	b, err := os.ReadFile(strings.TrimPrefix(uri, "local://"))
	require.NoError(t, err)
	var ks struct {
		Key []struct {
			KeyData struct {
				Value string `json:"value"`
			} `json:"keyData"`
		} `json:"key"`
	}
	require.NoError(t, json.Unmarshal(b, &ks))
	require.NotEmpty(t, ks.Key)
	require.NotEmpty(t, ks.Key[0].KeyData.Value)
	return ks.Key[0].KeyData.Value
}

func TestAReplicaOnTheOldRootKEKIsNotReadyAndSaysWhy(t *testing.T) {
	db := ownDatabase(t)
	ctx := context.Background()
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	oldKEK, oldURI := vaulttest.KEK(t)
	newKEK := vaulttest.NewSwitchableKEK(t)
	stale := newReplica(t, db, oldKEK, oldURI, clock)
	keyA := stale.key(t)
	clock.Advance(time.Second) // tenant A is the older: the one readiness checks first
	keyB := stale.key(t)
	for _, key := range []string{keyA, keyB} {
		require.Equal(t, http.StatusCreated, stale.do(t, http.MethodPost, "/tokens", key, cardBody("", "4242424242424242")).status)
	}
	require.Equal(t, http.StatusOK, stale.do(t, http.MethodGet, "/readyz", "", "").status)

	// The operator moves every keyset to the new KEK from another process;
	// the stale replica's cached keys serve until they expire.
	operator := vaulttest.NewService(t, db, vaulttest.Options{KEK: oldKEK})
	_, err := operator.RotateRootKEK(ctx, newKEK, "test://new-kek", false)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, stale.do(t, http.MethodGet, "/tokens", keyA, "").status, "cached keys still serve")
	clock.Advance(postgres.DefaultKeyCacheTTL + time.Minute)

	assertKEKMismatch(t, stale.do(t, http.MethodGet, "/tokens", keyA, ""), "tenant A's request")
	ready := stale.do(t, http.MethodGet, "/readyz", "", "")
	assertKEKMismatch(t, ready, "/readyz")
	assert.Contains(t, errorOf(t, ready)["message"], "keys of 1 tenant")
	assertKEKMismatch(t, stale.do(t, http.MethodPost, "/tokens", keyB, cardBody("", "4242424242424242")), "tenant B's request")
	clock.Advance(time.Second) // past the cached readiness answer
	ready = stale.do(t, http.MethodGet, "/readyz", "", "")
	assertKEKMismatch(t, ready, "/readyz")
	assert.Contains(t, errorOf(t, ready)["message"], "keys of 2 tenant", "readiness counts the tenants it cannot open")

	log := stale.log.String()
	assert.Contains(t, log, `"kek_uri":"`+oldURI+`"`, "the log names the configured KEK")
	assert.Contains(t, log, "keys rotate-root", "the log says what to do")
	assert.NotContains(t, log, kekMaterial(t, oldURI), "no key material in the log")

	t.Run("a replica on the new KEK serves and is ready", func(t *testing.T) {
		fresh := newReplica(t, db, newKEK, "test://new-kek", clock)
		assert.Equal(t, http.StatusOK, fresh.do(t, http.MethodGet, "/readyz", "", "").status)
		assert.Equal(t, http.StatusOK, fresh.do(t, http.MethodGet, "/tokens", keyB, "").status)
	})
	t.Run("the new KEK down is an outage, not a mismatch", func(t *testing.T) {
		down := newReplica(t, db, newKEK, "test://new-kek", clock)
		newKEK.Down.Store(true)
		defer newKEK.Down.Store(false)
		for _, path := range []string{"/tokens", "/readyz"} {
			res := down.do(t, http.MethodGet, path, keyA, "")
			require.Equal(t, http.StatusServiceUnavailable, res.status, "%s: %s", path, res.body)
			assert.Equal(t, vault.CodeKEKUnavailable, errorOf(t, res)["code"], path)
			assert.Equal(t, "1", res.header.Get("Retry-After"), path)
		}
	})
	t.Run("moved back to the old KEK, the stale replica is ready again without traffic", func(t *testing.T) {
		back := vaulttest.NewService(t, db, vaulttest.Options{KEK: newKEK})
		_, err := back.RotateRootKEK(ctx, oldKEK, oldURI, false)
		require.NoError(t, err)
		clock.Advance(time.Second) // past the cached readiness answer
		assert.Equal(t, http.StatusOK, stale.do(t, http.MethodGet, "/readyz", "", "").status)
		assert.Equal(t, http.StatusOK, stale.do(t, http.MethodGet, "/tokens", keyB, "").status)
	})
}
