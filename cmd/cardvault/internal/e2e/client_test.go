package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRouteHidesIDs(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/cde-import", "/cde-import"},
		{"/healthz", "/healthz"},
		{"/tokens/3f6c9a2e-0d7b-4c1e-9a55-6b1f2e8d4c10", "/tokens/{id}"},
		{"/tokens/3f6c9a2e-0d7b-4c1e-9a55-6b1f2e8d4c10/detokenize", "/tokens/{id}/detokenize"},
		{"/tokens/imports", "/tokens/imports"},
		{"/tokens/imports/imp_1/items?status=failed", "/tokens/imports/{id}/items"},
		{"/v1/forwarding/requests", "/v1/forwarding/requests"},
		{"/forwarding/destinations/fwddst_ZTP7Q2MJ4XKDN5VB6WRCY3HLAE", "/forwarding/destinations/{id}"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			assert.Equal(t, tt.want, Route(tt.path))
		})
	}
}

func TestTokenIDAndAPIError(t *testing.T) {
	id, err := TokenID([]byte(`{"id":"3f6c9a2e-0d7b-4c1e-9a55-6b1f2e8d4c10","object":"token"}`))
	require.NoError(t, err)
	assert.Equal(t, "3f6c9a2e-0d7b-4c1e-9a55-6b1f2e8d4c10", id)
	for _, body := range []string{`{"object":"token"}`, `not json`, ``} {
		_, err := TokenID([]byte(body))
		assert.Error(t, err, body)
	}
	a := Answer{Status: 503, Body: []byte(`{"error":{"type":"api_error","code":"kek_unavailable"}}`)}
	typ, code := a.APIError()
	assert.Equal(t, "api_error", typ)
	assert.Equal(t, "kek_unavailable", code)
	assert.False(t, a.OK())
	assert.True(t, Answer{Status: 201}.OK())
}
