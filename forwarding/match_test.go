package forwarding

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMatch(t *testing.T) {
	dests := []Destination{
		{URL: "https://api.processor.example/v1/payments"},
		{URL: "https://vault.example.com:8443/tokens/*"},
		{URL: "https://API.Other.example"},
		{URL: "http://localhost:8080/cde-import"},
	}
	tests := []struct {
		url  string
		want int // index in dests, -1 for no match
	}{
		{"https://api.processor.example/v1/payments", 0},
		{"HTTPS://API.PROCESSOR.EXAMPLE/v1/payments", 0},
		{"https://api.processor.example:443/v1/payments", 0},
		{"https://api.processor.example/v1/payments?x=1", 0},
		{"https://api.processor.example/v1/payments/", -1},
		{"https://api.processor.example/V1/payments", -1},
		{"https://api.processor.example/v1/payments/refunds", -1},
		{"https://api.processor.example:8443/v1/payments", -1},
		{"http://api.processor.example/v1/payments", -1},
		{"https://api.processor.example./v1/payments", -1},
		{"https://user@api.processor.example/v1/payments", -1},
		{"https://user:pw@api.processor.example/v1/payments", -1},
		{"https://api.processor.example/v1/payments#frag", -1},
		{"https://api.processor.example/v1/payments#", -1},
		{"https://evil.example/v1/payments", -1},
		{"https://api.processor.example.evil.example/v1/payments", -1},
		{"https://93.184.215.14/v1/payments", -1},
		{"https://[::1]/v1/payments", -1},
		{"https://api.processor.example/v1/%70ayments", -1},
		{"https://api.processor.example/v1/x/../payments", -1},
		{"https://api.processor.example/v1/./payments", -1},
		{"https://api.processor.example/v1//payments", -1},
		{"https://api.processor.example/v1/payments%2f", -1},
		{"https://api.processor.example/v1%2Fpayments", -1},
		{"https://api.processor.example/v1/%2e%2e/payments", -1},
		{`https://api.processor.example/v1\payments`, -1},
		{"https://api.processor.example/v1/payments;x", -1},
		{"api.processor.example/v1/payments", -1},
		{"//api.processor.example/v1/payments", -1},
		{"https:api.processor.example/v1/payments", -1},
		{"", -1},

		{"https://vault.example.com:8443/tokens/", 1},
		{"https://vault.example.com:8443/tokens/abc", 1},
		{"https://vault.example.com:8443/tokens/abc/def", 1},
		{"https://vault.example.com:8443/tokens", -1},
		{"https://vault.example.com:8443/tokensx", -1},
		{"https://vault.example.com/tokens/abc", -1},
		{"https://vault.example.com:8443/tokens/../admin", -1},
		{"https://vault.example.com:8443/tokens/%2e%2e/admin", -1},
		{"https://vault.example.com:8443/tokens/..;/admin", -1},
		{"https://vault.example.com:8443/tokens/a%2fb", -1},
		{"https://vault.example.com:8443/tokens/a%00b", -1},
		{"https://vault.example.com:8443/tokens/a%252e", -1},

		{"https://api.other.example", 2},
		{"https://api.other.example/", 2},
		{"https://api.other.example/x", -1},

		{"http://localhost:8080/cde-import", 3},
		{"http://127.0.0.1:8080/cde-import", -1},
		{"http://localhost:8081/cde-import", -1},
	}
	for _, tt := range tests {
		got, ok := Match(dests, tt.url)
		if tt.want < 0 {
			assert.False(t, ok, "%q matched %q", tt.url, got.URL)
			continue
		}
		if assert.True(t, ok, tt.url) {
			assert.Equal(t, dests[tt.want].URL, got.URL, tt.url)
		}
	}
	_, ok := Match([]Destination{{URL: "not a url"}}, "https://api.processor.example/")
	assert.False(t, ok, "an invalid pattern matches nothing")
}
