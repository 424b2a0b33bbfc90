package httpapi

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cardvault/cardvault/vault"
)

func TestCheckQuery(t *testing.T) {
	list := []string{"limit", "starting_after", "business_key"}
	tests := []struct {
		name, raw   string
		allowed     []string
		code, param string // code "" for accepted
		inMessage   string
	}{
		{"no query", "", nil, "", "", ""},
		{"empty pairs", "&&", nil, "", "", ""},
		{"allowed ones", "limit=5&business_key=pm_1&starting_after=x", list, "", "", ""},
		{"allowed without a value", "limit", list, "", "", ""},
		{"misspelt", "businesskey=pm_1", list, codeParameterUnknown, "businesskey", "takes limit, starting_after, business_key"},
		{"none taken", "foo=1", nil, codeParameterUnknown, "foo", "takes no query parameters"},
		{"first unknown by name", "zeta=1&alpha=1&limit=2", list, codeParameterUnknown, "alpha", `"alpha"`},
		{"unknown before repeated", "limit=1&limit=2&x=1", list, codeParameterUnknown, "x", `"x"`},
		{"repeated", "limit=1&limit=2", list, vault.CodeParameterInvalid, "limit", "given 2 times"},
		{"repeated empty", "business_key&business_key=", list, vault.CodeParameterInvalid, "business_key", "given 2 times"},
		{"bad escape", "limit=%zz", list, vault.CodeParameterInvalid, "", "malformed"},
		{"semicolon", "limit=1;x=2", list, vault.CodeParameterInvalid, "", "malformed"},
		{"PAN as a name", "4242424242424242=1", list, codeParameterUnknown, "424242******4242", "424242******4242"},
		{"long name", strings.Repeat("n", 500) + "=1", list, codeParameterUnknown, strings.Repeat("n", maxShownParam) + "…", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkQuery(tt.raw, tt.allowed)
			if tt.code == "" {
				assert.NoError(t, err)
				return
			}
			e := vault.AsError(err)
			assert.Equal(t, vault.KindBadRequest, e.Kind)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, tt.param, e.Param)
			assert.Contains(t, e.Message, tt.inMessage)
			assert.NotContains(t, e.Message, "4242424242424242")
			assert.NotContains(t, e.Message, "pm_1", "values are never echoed")
		})
	}
}

// BenchmarkCheckQuery is what the query check adds to a list request with
// a page size and a cursor.
func BenchmarkCheckQuery(b *testing.B) {
	allowed := []string{"limit", "starting_after", "business_key"}
	raw := "limit=100&starting_after=9b2f4c1e-8a7d-4c3b-9e1f-2a6b5c4d3e2f"
	for b.Loop() {
		if err := checkQuery(raw, allowed); err != nil {
			b.Fatal(err)
		}
	}
}
