package httpapi_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestHealthAndReadiness(t *testing.T) {
	ts := newTestServer(t)
	ts.key(t) // at least one tenant, so readiness proves the KEK opens its keysets
	for _, path := range []string{"/healthz", "/readyz"} {
		res := ts.do(t, http.MethodGet, path, "", "")
		assert.Equal(t, http.StatusOK, res.status, path)
		assert.NotEmpty(t, res.header.Get("Request-Id"))
	}
}

func TestReadinessFailsWhenTheDatabaseIsGone(t *testing.T) {
	pool := vaulttest.Pool(t, dbURL)
	kek, _ := vaulttest.KEK(t)
	svc, err := postgres.NewService(postgres.Config{Pool: pool, KEK: kek})
	require.NoError(t, err)
	srv := httptest.NewServer(validated(t, httpapi.New(svc, slog.New(slog.DiscardHandler))))
	defer srv.Close()
	pool.Close()

	res, err := srv.Client().Get(srv.URL + "/readyz")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Equal(t, "1", res.Header.Get("Retry-After"))
	res2, err := srv.Client().Get(srv.URL + "/healthz")
	require.NoError(t, err)
	defer res2.Body.Close()
	assert.Equal(t, http.StatusOK, res2.StatusCode, "the process itself is still up")
}
