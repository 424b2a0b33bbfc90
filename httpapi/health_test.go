package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

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

// countingService counts the readiness checks that reach the vault.
type countingService struct {
	*postgres.Service
	readies atomic.Int32
}

func (c *countingService) Ready(ctx context.Context) error {
	c.readies.Add(1)
	return c.Service.Ready(ctx)
}

func TestReadinessIsCheckedAtMostOnceASecond(t *testing.T) {
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	svc := &countingService{Service: vaulttest.NewService(t, dbURL, vaulttest.Options{})}
	srv := httptest.NewServer(httpapi.New(svc, slog.New(slog.DiscardHandler), httpapi.WithLimits(httpapi.Limits{Now: clock.Now})))
	defer srv.Close()
	get := func() int {
		res, err := srv.Client().Get(srv.URL + "/readyz")
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	tests := []struct {
		name    string
		advance time.Duration
		checks  int32 // the vault's readiness checks so far
	}{
		{"the first probe checks", 0, 1},
		{"probes within the second reuse it", 999 * time.Millisecond, 1},
		{"a second later it checks again", time.Millisecond, 2},
		{"and is reused again", 0, 2},
	}
	for _, tt := range tests {
		clock.Advance(tt.advance)
		for range 5 {
			require.Equal(t, http.StatusOK, get(), tt.name)
		}
		assert.Equal(t, tt.checks, svc.readies.Load(), tt.name)
	}
}
