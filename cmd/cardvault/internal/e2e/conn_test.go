package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// echoServer answers every request with its method, path, API key,
// content type and body, and counts the connections it accepted; a
// request with ?close answers with Connection: close.
func echoServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	return vaulttest.CountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Query().Has("close") {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-API-Key")+" "+r.Header.Get("Content-Type")+" "+string(body))
	}))
}

// echoConn starts an echoServer and returns a connection to it sending
// apiKey, closed when t ends.
func echoConn(t *testing.T, apiKey string) (*Conn, *httptest.Server, *atomic.Int64) {
	t.Helper()
	srv, conns := echoServer(t)
	c, err := NewConn(srv.URL, apiKey, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, srv, conns
}

func TestConnSendsRequestsOnOneConnection(t *testing.T) {
	c, _, conns := echoConn(t, "k_1")
	ctx := context.Background()
	tests := []struct {
		method, path string
		body         []byte
		want         string
	}{
		{http.MethodPost, "/cde-import", []byte(`{"a":1}`), `POST /cde-import k_1 application/json {"a":1}`},
		{http.MethodGet, "/tokens/abc", nil, `GET /tokens/abc k_1  `},
		{http.MethodPost, "/tokens/abc/detokenize", []byte{}, `POST /tokens/abc/detokenize k_1 application/json `},
	}
	for _, tt := range tests {
		out, err := c.Call(ctx, tt.method, tt.path, tt.body, http.StatusCreated)
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(out))
	}
	assert.EqualValues(t, 1, conns.Load(), "every request on the one connection")
}

func TestConnReconnectsWhenTheServerClosed(t *testing.T) {
	c, srv, conns := echoConn(t, "")
	ctx := context.Background()
	_, err := c.Call(ctx, http.MethodGet, "/healthz?close", nil, http.StatusCreated)
	require.NoError(t, err)
	out, err := c.Call(ctx, http.MethodGet, "/healthz", nil, http.StatusCreated)
	require.NoError(t, err)
	assert.Equal(t, "GET /healthz   ", string(out), "no X-API-Key without a key")
	assert.EqualValues(t, 2, conns.Load())

	srv.CloseClientConnections()
	_, err = c.Call(ctx, http.MethodGet, "/healthz", nil, http.StatusCreated)
	if err != nil { // the write may reach the closed socket before the close is seen
		_, err = c.Call(ctx, http.MethodGet, "/healthz", nil, http.StatusCreated)
	}
	require.NoError(t, err)
	assert.EqualValues(t, 3, conns.Load())
}

func TestConnErrors(t *testing.T) {
	c, _, _ := echoConn(t, "")
	_, err := c.Call(context.Background(), http.MethodGet, "/tokens/3f6c9a2e-0d7b-4c1e-9a55-6b1f2e8d4c10", nil, http.StatusOK)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "GET /tokens/{id}: HTTP 201")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Call(ctx, http.MethodGet, "/healthz", nil, http.StatusCreated)
	assert.Error(t, err, "a cancelled context ends the request")

	for _, u := range []string{"https://127.0.0.1:1", "127.0.0.1:1", "http://"} {
		_, err := NewConn(u, "", time.Second)
		assert.Error(t, err, u)
	}
}
