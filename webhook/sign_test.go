package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/webhook"
)

func TestSignAndVerify(t *testing.T) {
	const secret = "whsec_test"
	body := []byte(`{"id":"evt_1","type":"token.created","created_at":"2026-11-01T12:00:00Z","data":{}}`)
	sent := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	header := webhook.Sign(secret, sent, body)
	// HMAC-SHA256 keyed "whsec_test" of "1793534400." + body, computed with Python's hmac module.
	const sig = "4a2175e8c13c6777a0c989797f1b8f44099d6c4327ef4aeb8b0afbf8c72ea28d"
	assert.Equal(t, "t=1793534400,v1="+sig, header)

	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		secret string
		now    time.Time
		want   error
	}{
		{"genuine", header, body, secret, sent, nil},
		{"genuine, 4m59s later", header, body, secret, sent.Add(4*time.Minute + 59*time.Second), nil},
		{"genuine, clock 4m behind", header, body, secret, sent.Add(-4 * time.Minute), nil},
		{"spaces after commas", "t=1793534400, v1=" + sig, body, secret, sent, nil},
		{"one of two signatures matches", "t=1793534400,v1=" + strings.Repeat("0", 64) + ",v1=" + sig, body, secret, sent, nil},
		{"unknown schemes ignored", "t=1793534400,v0=abc,v1=" + sig, body, secret, sent, nil},
		{"tampered body", header, append([]byte(nil), append(body[:len(body)-1], ',', '}')...), secret, sent, webhook.ErrNoValidSig},
		{"wrong secret", header, body, "whsec_other", sent, webhook.ErrNoValidSig},
		{"timestamp changed", "t=1793534401,v1=" + sig, body, secret, sent, webhook.ErrNoValidSig},
		{"stale: 5m01s later", header, body, secret, sent.Add(5*time.Minute + time.Second), webhook.ErrStaleTimestamp},
		{"from the future", header, body, secret, sent.Add(-6 * time.Minute), webhook.ErrStaleTimestamp},
		{"empty header", "", body, secret, sent, webhook.ErrMalformedHeader},
		{"no timestamp", "v1=" + sig, body, secret, sent, webhook.ErrMalformedHeader},
		{"no signature", "t=1793534400", body, secret, sent, webhook.ErrMalformedHeader},
		{"two timestamps", "t=1793534400,t=1793534400,v1=" + sig, body, secret, sent, webhook.ErrMalformedHeader},
		{"timestamp not a number", "t=soon,v1=" + sig, body, secret, sent, webhook.ErrMalformedHeader},
		{"signature not hex", "t=1793534400,v1=zz", body, secret, sent, webhook.ErrMalformedHeader},
		{"no key=value", "t=1793534400,v1", body, secret, sent, webhook.ErrMalformedHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, webhook.Verify(tc.header, tc.body, tc.secret, webhook.DefaultTolerance, tc.now), tc.want)
		})
	}
}
