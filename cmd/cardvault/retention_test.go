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

// TestRetentionSettings: the four retentions default to 30, 90, 90 and 365
// days, take a number of days or a duration, and refuse anything under an
// hour, each named by its variable.
func TestRetentionSettings(t *testing.T) {
	for _, name := range []string{"VAULT_WEBHOOK_RETENTION", "VAULT_IMPORT_RETENTION", "VAULT_EXPORT_RETENTION", "VAULT_KEY_JOB_RETENTION"} {
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
		Exports: vault.DefaultExportRetention, KeyJobs: vault.DefaultKeyJobRetention}, cfg.Retention)

	cfg, err = parse("--webhook-retention", "7d", "--import-retention", "36h", "--export-retention", "3d", "--key-job-retention", "2d")
	require.NoError(t, err)
	assert.Equal(t, vault.Retention{Webhooks: 7 * 24 * time.Hour, Imports: 36 * time.Hour, Exports: 72 * time.Hour,
		KeyJobs: 48 * time.Hour}, cfg.Retention)

	t.Setenv("VAULT_EXPORT_RETENTION", "5d")
	cfg, err = parse()
	require.NoError(t, err)
	assert.Equal(t, 5*24*time.Hour, cfg.Retention.Exports)

	_, err = parse("--webhook-retention", "10m", "--import-retention", "forever", "--export-retention", "59m", "--key-job-retention", "0d")
	for _, name := range []string{"VAULT_WEBHOOK_RETENTION", "VAULT_IMPORT_RETENTION", "VAULT_EXPORT_RETENTION", "VAULT_KEY_JOB_RETENTION"} {
		assert.Contains(t, fmt.Sprint(err), name)
	}
}

// TestFileImportLeaseTTLSetting: serve and `import file` both take
// VAULT_FILE_IMPORT_LEASE_TTL (a minute by default) and refuse a value
// outside 1s-1h, naming the variable.
func TestFileImportLeaseTTLSetting(t *testing.T) {
	t.Setenv("VAULT_FILE_IMPORT_LEASE_TTL", "")
	for _, bind := range []func(*rawConfig, *pflag.FlagSet){(*rawConfig).bindServer, (*rawConfig).bindFileImport} {
		parse := func(args ...string) (config, error) {
			var raw rawConfig
			fs := pflag.NewFlagSet("cmd", pflag.ContinueOnError)
			bind(&raw, fs)
			require.NoError(t, fs.Parse(args))
			raw.databaseURL, raw.kekURI = "postgres://x", "local:///k.json"
			return raw.parse(true)
		}
		cfg, err := parse()
		require.NoError(t, err)
		assert.Equal(t, time.Minute, cfg.Import.FileLeaseTTL)
		cfg, err = parse("--file-import-lease-ttl", "2s")
		require.NoError(t, err)
		assert.Equal(t, 2*time.Second, cfg.Import.FileLeaseTTL)
		_, err = parse("--file-import-lease-ttl", "100ms")
		assert.ErrorContains(t, err, "VAULT_FILE_IMPORT_LEASE_TTL")
	}
}
