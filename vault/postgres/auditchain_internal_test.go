package postgres

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleChainRow() chainRow {
	return chainRow{
		id: 42, seq: 7, occurredAt: time.Date(2026, 11, 22, 15, 16, 55, 123456000, time.UTC),
		tenant:    uuid.MustParse("6bfb3c8e-1d2a-4c5b-9e7f-0a1b2c3d4e5f"),
		apiKey:    uuid.MustParse("0f1e2d3c-4b5a-4968-8776-655443322110"),
		action:    "token.reveal",
		token:     uuid.MustParse("bb9dc2c1-35dc-4084-b992-8fa74f5f2077"),
		requestID: "req_1", clientAddr: "192.0.2.7", outcome: "success",
		detail: []byte(`{"reason": "charge", "cvc_revealed": true}`),
	}
}

// The encoding is a stored format: every chain already written depends on
// it, so a change must fail this known-answer test.
func TestAuditRowHashKnownAnswer(t *testing.T) {
	h, err := sampleChainRow().rowHash(genesisHash)
	require.NoError(t, err)
	assert.Equal(t, "5e58a0184edaafc60d173df27e4cf545a9491a45df7f4d7fcdfa4a142fb2d153", hex.EncodeToString(h))
}

func TestAuditRowHashCoversEveryField(t *testing.T) {
	base, err := sampleChainRow().rowHash(genesisHash)
	require.NoError(t, err)
	tests := []struct {
		name   string
		change func(*chainRow)
	}{
		{"seq", func(r *chainRow) { r.seq++ }},
		{"id", func(r *chainRow) { r.id++ }},
		{"tenant", func(r *chainRow) { r.tenant = uuid.Nil }},
		{"time", func(r *chainRow) { r.occurredAt = r.occurredAt.Add(time.Microsecond) }},
		{"action", func(r *chainRow) { r.action = "token.read" }},
		{"actor", func(r *chainRow) { r.apiKey = uuid.Nil }},
		{"token", func(r *chainRow) { r.token = uuid.Nil }},
		{"outcome", func(r *chainRow) { r.outcome = "failure" }},
		{"request id", func(r *chainRow) { r.requestID = "req_2" }},
		{"client address", func(r *chainRow) { r.clientAddr = "192.0.2.8" }},
		{"detail", func(r *chainRow) { r.detail = []byte(`{"reason":"charge","cvc_revealed":false}`) }},
		{"field boundary", func(r *chainRow) { r.requestID, r.clientAddr = "req_1192.0.2.7", "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleChainRow()
			tt.change(&r)
			h, err := r.rowHash(genesisHash)
			require.NoError(t, err)
			assert.NotEqual(t, base, h)
		})
	}
	other, err := sampleChainRow().rowHash(base)
	require.NoError(t, err)
	assert.NotEqual(t, base, other, "the previous hash is covered")
}

func TestCanonicalJSONIgnoresKeyOrderAndSpacing(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`{"b": 1, "a": [1.50, "x<y"]}`, `{"a":[1.50,"x<y"],"b":1}`},
		{`{"a":[1.50,"x<y"],"b":1}`, `{"a":[1.50,"x<y"],"b":1}`},
		{`{"n": {"z": null, "y": 12345678901234567890}}`, `{"n":{"y":12345678901234567890,"z":null}}`},
		{`{}`, `{}`},
	}
	for _, tt := range tests {
		got, err := canonicalJSON([]byte(tt.in))
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(got), tt.in)
	}
	_, err := canonicalJSON([]byte(`{} {}`))
	assert.Error(t, err, "one document only")
}
