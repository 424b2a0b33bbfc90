package exporter

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/vault"
)

// TestOutcomeRetriesOnlyWhatMaySucceedLater: an error answer is retried
// when sending again may succeed (a 409 idempotency_key_in_use among them:
// the destination still runs an earlier send of the key, e.g. one a
// crashed process made) and given up otherwise or once attempts ran out.
func TestOutcomeRetriesOnlyWhatMaySucceedLater(t *testing.T) {
	r := &Runner{cfg: Config{MaxAttempts: 3, RetryBase: time.Second, RetryCap: time.Minute}}
	j := &job{}
	tests := []struct {
		status  int
		body    string
		attempt int
		want    vault.ItemStatus
	}{
		{201, `{"id":"tok_1"}`, 1, vault.ItemSucceeded},
		{409, `{"error":{"code":"idempotency_key_in_use"}}`, 1, vault.ItemPending},
		{409, `{"error":{"code":"idempotency_key_in_use"}}`, 3, vault.ItemFailed},
		{409, `{"error":{"code":"resource_already_exists"}}`, 1, vault.ItemFailed},
		{429, ``, 1, vault.ItemPending},
		{408, ``, 2, vault.ItemPending},
		{503, ``, 1, vault.ItemPending},
		{400, `{"error":{"code":"invalid_card"}}`, 1, vault.ItemFailed},
		{401, ``, 1, vault.ItemFailed},
	}
	for _, tt := range tests {
		rec := vault.ForwardingRequest{Response: &vault.ForwardedResponse{Status: tt.status, Body: tt.body}}
		got := r.outcome(j, rec, nil, tt.attempt)
		assert.Equal(t, tt.want, got.Status, "HTTP %d %s, attempt %d: %s", tt.status, tt.body, tt.attempt, got.Error)
	}
}
