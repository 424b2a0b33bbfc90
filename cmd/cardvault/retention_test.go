package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// TestRetentionSettings: the three retentions default to 30, 90 and 365
// days, take a number of days or a duration, and refuse anything under an
// hour, each named by its variable.
func TestRetentionSettings(t *testing.T) {
	for _, name := range []string{"VAULT_WEBHOOK_RETENTION", "VAULT_IMPORT_RETENTION", "VAULT_KEY_JOB_RETENTION"} {
		t.Setenv(name, "")
	}
	parse := func(args ...string) (config, error) {
		var raw rawConfig
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		raw.bindServer(fs)
		require.NoError(t, fs.Parse(args))
		raw.databaseURL, raw.kekURI = "postgres://x", "local:///k.json"
		return raw.parse(true)
	}
	cfg, err := parse()
	require.NoError(t, err)
	assert.Equal(t, vault.Retention{Webhooks: vault.DefaultWebhookRetention, Imports: vault.DefaultImportRetention,
		KeyJobs: vault.DefaultKeyJobRetention}, cfg.Retention)

	cfg, err = parse("--webhook-retention", "7d", "--import-retention", "36h", "--key-job-retention", "2d")
	require.NoError(t, err)
	assert.Equal(t, vault.Retention{Webhooks: 7 * 24 * time.Hour, Imports: 36 * time.Hour, KeyJobs: 48 * time.Hour}, cfg.Retention)

	_, err = parse("--webhook-retention", "10m", "--import-retention", "forever", "--key-job-retention", "0d")
	for _, name := range []string{"VAULT_WEBHOOK_RETENTION", "VAULT_IMPORT_RETENTION", "VAULT_KEY_JOB_RETENTION"} {
		assert.Contains(t, fmt.Sprint(err), name)
	}
}
