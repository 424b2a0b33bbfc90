package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestRequestLimitsAreParsed(t *testing.T) {
	tests := []struct {
		name string
		raw  rawLimits
		want httpapi.Limits
		errs []string
	}{
		{"defaults", rawLimits{"100", "200", "30", "256"}, httpapi.DefaultLimits, nil},
		{"everything off", rawLimits{"0", "1", "0", "0"}, httpapi.Limits{Burst: 1}, nil},
		{"fractional rate", rawLimits{"0.5", "1", "5", "8"}, httpapi.Limits{Rate: 0.5, Burst: 1, AuthFailures: 5, MaxInflight: 8}, nil},
		{"negative rate", rawLimits{"-1", "200", "30", "256"}, httpapi.Limits{}, []string{"VAULT_RATE_LIMIT"}},
		{"NaN rate", rawLimits{"NaN", "200", "30", "256"}, httpapi.Limits{}, []string{"VAULT_RATE_LIMIT"}},
		{"zero burst", rawLimits{"100", "0", "30", "256"}, httpapi.Limits{}, []string{"VAULT_RATE_BURST"}},
		{"all wrong at once", rawLimits{"fast", "x", "-3", "1e9"}, httpapi.Limits{},
			[]string{"VAULT_RATE_LIMIT", "VAULT_RATE_BURST", "VAULT_AUTH_FAILURE_LIMIT", "VAULT_MAX_INFLIGHT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := tt.raw.parse()
			require.Len(t, errs, len(tt.errs), "errors: %v", errs)
			for i, want := range tt.errs {
				assert.ErrorContains(t, errs[i], want)
			}
			if len(tt.errs) == 0 {
				assert.Equal(t, tt.want, got)
			}
		})
	}
}

func TestServeRefusesBadRequestLimits(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	tests := []struct {
		flag, value, want string
	}{
		{"--rate-limit", "-5", "VAULT_RATE_LIMIT"},
		{"--rate-burst", "0", "VAULT_RATE_BURST"},
		{"--auth-failure-limit", "many", "VAULT_AUTH_FAILURE_LIMIT"},
		{"--max-inflight", "-1", "VAULT_MAX_INFLIGHT"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			_, _, err := run(t, "serve", "--database-url", dbURL, "--kek-uri", kek, "--listen", "127.0.0.1:0", tt.flag+"="+tt.value)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}
