package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestCardsAndBody checks that the harness sends distinct Luhn-valid
// test cards (the numbers vaulttest.LuhnNumber makes) in the shape of
// testdata/stripe/forward_body_template.json.
func TestCardsAndBody(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		n := CardNumber(i)
		_, err := card.ParsePAN(n)
		require.NoError(t, err, "card %d", i)
		assert.False(t, seen[n], "card %d repeats", i)
		seen[n] = true
		bin := testBINs[i%len(testBINs)]
		assert.Equal(t, vaulttest.LuhnNumber(bin.prefix, bin.length, i/len(testBINs)), n)
	}
	tmpl, err := os.ReadFile(filepath.Join(vaulttest.RepoRoot(t), "testdata", "stripe", "forward_body_template.json"))
	require.NoError(t, err)
	assert.Equal(t, jsonKeys(t, tmpl), jsonKeys(t, ForwardBody("pm_1", CardNumber(1))))
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
