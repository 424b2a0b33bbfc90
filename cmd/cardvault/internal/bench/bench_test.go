package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/vaulttest"
)

// TestBenchCardsAndBody checks that the bench sends distinct Luhn-valid
// test cards (the numbers vaulttest.LuhnNumber makes) in the shape of
// testdata/stripe/forward_body_template.json.
func TestBenchCardsAndBody(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		n := benchCardNumber(i)
		_, err := vault.ParsePAN(n)
		require.NoError(t, err, "card %d", i)
		assert.False(t, seen[n], "card %d repeats", i)
		seen[n] = true
		bin := testBINs[i%len(testBINs)]
		assert.Equal(t, vaulttest.LuhnNumber(bin.prefix, bin.length, i/len(testBINs)), n)
	}
	tmpl, err := os.ReadFile(filepath.Join(vaulttest.RepoRoot(t), "testdata", "stripe", "forward_body_template.json"))
	require.NoError(t, err)
	assert.Equal(t, jsonKeys(t, tmpl), jsonKeys(t, forwardBody("pm_1", benchCardNumber(1))))
}

// jsonKeys returns the dotted key paths of a JSON object, sorted.
func jsonKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(doc, &m))
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			keys = append(keys, prefix+k)
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", m)
	slices.Sort(keys)
	return keys
}

func TestBenchOptionsValidate(t *testing.T) {
	good := Options{Concurrency: 32, Duration: 10 * time.Second, Out: "x", ImportCards: 2000, ImportConcurrency: 16}
	require.NoError(t, good.Validate())
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{"concurrency", func(o *Options) { o.Concurrency = 0 }},
		{"duration", func(o *Options) { o.Duration = time.Millisecond }},
		{"warmup", func(o *Options) { o.Warmup = -time.Second }},
		{"import-cards", func(o *Options) { o.ImportCards = 0 }},
		{"import-concurrency", func(o *Options) { o.ImportConcurrency = 1000 }},
		{"out", func(o *Options) { o.Out = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mod(&o)
			assert.ErrorContains(t, o.Validate(), "--"+tc.name)
		})
	}
}
