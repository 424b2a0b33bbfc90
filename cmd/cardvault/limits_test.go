package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

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
		{"defaults", rawLimits{"100", "200", "30", "256", ""}, httpapi.DefaultLimits, nil},
		{"everything off", rawLimits{"0", "1", "0", "0", ""}, httpapi.Limits{Burst: 1}, nil},
		{"fractional rate", rawLimits{"0.5", "1", "5", "8", ""}, httpapi.Limits{Rate: 0.5, Burst: 1, AuthFailures: 5, MaxInflight: 8}, nil},
		{"negative rate", rawLimits{"-1", "200", "30", "256", ""}, httpapi.Limits{}, []string{"VAULT_RATE_LIMIT"}},
		{"NaN rate", rawLimits{"NaN", "200", "30", "256", ""}, httpapi.Limits{}, []string{"VAULT_RATE_LIMIT"}},
		{"zero burst", rawLimits{"100", "0", "30", "256", ""}, httpapi.Limits{}, []string{"VAULT_RATE_BURST"}},
		{"trusted proxies", rawLimits{"100", "200", "30", "256", " 10.0.0.0/8, 2001:db8::/32,192.0.2.1 "},
			httpapi.Limits{Rate: 100, Burst: 200, AuthFailures: 30, MaxInflight: 256, TrustedProxies: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.1/32")}}, nil},
		{"a trusted proxy that is not a CIDR", rawLimits{"100", "200", "30", "256", "10.0.0.0/8,lb.internal"}, httpapi.Limits{}, []string{"VAULT_TRUSTED_PROXIES"}},
		{"all wrong at once", rawLimits{"fast", "x", "-3", "1e9", ""}, httpapi.Limits{},
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
		{"--trusted-proxies", "10.0.0.0/33", "VAULT_TRUSTED_PROXIES"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			_, _, err := run(t, "serve", "--database-url", dbURL, "--kek-uri", kek, "--listen", "127.0.0.1:0", tt.flag+"="+tt.value)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestServeWarnsWhenLoopbackEgressIsOn(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := config{KEKURI: "local:///test/kek.json", Cryptoperiod: 365 * 24 * time.Hour, KeyRefresh: time.Second, EgressAllowLoopback: on}
		sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), cfg)
		require.NoError(t, sv.stop())
		assert.Equal(t, on, strings.Contains(sv.log.String(), "VAULT_EGRESS_ALLOW_LOOPBACK is on"), "on: %v", on)
	}
	_, kek := vaulttest.KEK(t)
	_, _, err := run(t, "serve", "--database-url", dbURL, "--kek-uri", kek, "--listen", "127.0.0.1:0", "--egress-allow-loopback=maybe")
	assert.ErrorContains(t, err, "VAULT_EGRESS_ALLOW_LOOPBACK")
}
