package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flagNames returns the sorted names of the flags `--help` lists for cmd.
func flagNames(cmd *cobra.Command) []string {
	var names []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			names = append(names, f.Name)
		}
	})
	slices.Sort(names)
	return names
}

// TestEachCommandListsOnlyTheFlagsItUses holds every operator command to
// the flags it reads: the database, the root KEK and the log level, plus
// its own (--operator for a command whose actions are audited); the serving flags (listen, limits, imports, TLS…) belong to
// serve and dev.
func TestEachCommandListsOnlyTheFlagsItUses(t *testing.T) {
	vaultFlags := []string{"database-url", "kek-uri", "log-level"}
	want := map[string][]string{
		"migrate":                 {"database-url"},
		"kek create":              {"out"},
		"tenant create":           append([]string{"operator"}, vaultFlags...),
		"tenant list":             append([]string{"json"}, vaultFlags...),
		"tenant destroy":          append([]string{"confirm", "operator"}, vaultFlags...),
		"apikey create":           append([]string{"description", "expires-in", "operator", "scopes", "tenant"}, vaultFlags...),
		"apikey list":             append([]string{"tenant"}, vaultFlags...),
		"apikey revoke":           append([]string{"operator"}, vaultFlags...),
		"keys status":             append([]string{"all", "json", "key-cryptoperiod", "operator", "tenant"}, vaultFlags...),
		"keys rotate":             append([]string{"all", "key-refresh", "operator", "tenant"}, vaultFlags...),
		"keys reencrypt":          append([]string{"all", "operator", "tenant", "wait"}, vaultFlags...),
		"keys retire":             append([]string{"destroy", "key", "operator", "tenant"}, vaultFlags...),
		"keys rotate-root":        append([]string{"dry-run", "new-kek-uri", "operator"}, vaultFlags...),
		"audit verify":            append([]string{"checkpoints", "json", "resume", "tenant"}, vaultFlags...),
		"audit checkpoint export": append([]string{"out", "tenant"}, vaultFlags...),
		"import stripe":           append([]string{"api-key", "operator", "tenant", "wait"}, vaultFlags...),
		"import watch":            vaultFlags,
		"version":                 nil,
	}
	root := newRootCmd()
	for path, flags := range want {
		t.Run(path, func(t *testing.T) {
			cmd, _, err := root.Find(strings.Fields(path))
			require.NoError(t, err)
			wantSorted := slices.Clone(flags)
			slices.Sort(wantSorted)
			assert.Equal(t, wantSorted, flagNames(cmd))
		})
	}
	for _, path := range []string{"serve", "dev"} {
		cmd, _, err := root.Find([]string{path})
		require.NoError(t, err)
		assert.Subset(t, flagNames(cmd), []string{"listen", "rate-limit", "import-rate", "cvc-ttl", "audit-retention"}, path)
	}
}

// TestDevListensOnLoopbackUnlessAsked checks dev's default address, while
// serve keeps listening on every interface.
func TestDevListensOnLoopbackUnlessAsked(t *testing.T) {
	t.Setenv("VAULT_LISTEN", "")
	root := newRootCmd()
	dev, _, err := root.Find([]string{"dev"})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", dev.Flags().Lookup("listen").DefValue)
	serve, _, err := root.Find([]string{"serve"})
	require.NoError(t, err)
	assert.Equal(t, ":8080", serve.Flags().Lookup("listen").DefValue)

	t.Setenv("VAULT_LISTEN", "0.0.0.0:9090")
	dev, _, err = newRootCmd().Find([]string{"dev"})
	require.NoError(t, err)
	assert.Equal(t, "0.0.0.0:9090", dev.Flags().Lookup("listen").DefValue, "VAULT_LISTEN asks for another address")
}
