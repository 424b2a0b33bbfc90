package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

// TestMain names the operator of the commands the tests run (a test of a
// missing operator clears VAULT_OPERATOR).
func TestMain(m *testing.M) {
	os.Setenv("VAULT_OPERATOR", "test-operator")
	vaulttest.Main(m, "cmd", &dbURL)
}

// run executes the cardvault command line with args and returns its stdout
// and stderr.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// emptyDatabase creates a database with no schema next to the test one.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dbURL)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, strings.Replace(dbURL, "/"+cfg.Database, "/postgres", 1))
	require.NoError(t, err)
	defer conn.Close(ctx)
	name := "cardvault_test_cmd_empty_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), strings.Replace(dbURL, "/"+cfg.Database, "/postgres", 1))
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	return strings.Replace(dbURL, "/"+cfg.Database, "/"+name, 1)
}

// migratedDatabase creates a database of its own for a test that brings
// its own root KEK (startup refuses a KEK that cannot open every keyset).
func migratedDatabase(t *testing.T) string {
	t.Helper()
	url := emptyDatabase(t)
	_, _, err := run(t, "migrate", "--database-url", url)
	require.NoError(t, err)
	return url
}

func TestTenantAndAPIKeyCommandsPrintOnlyTheirResult(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	db := []string{"--database-url", migratedDatabase(t), "--kek-uri", kek}

	out, _, err := run(t, append([]string{"tenant", "create", "acme"}, db...)...)
	require.NoError(t, err)
	tenantID := strings.TrimSpace(out)
	_, err = uuid.Parse(tenantID)
	require.NoError(t, err, "stdout must be only the tenant id, got %q", out)

	out, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenantID, "--scopes", "tokens:create,tokens:read"}, db...)...)
	require.NoError(t, err)
	secret := strings.TrimSpace(out)
	assert.Regexp(t, `^cvk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`, secret, "stdout must be only the secret")

	out, _, err = run(t, append([]string{"apikey", "list", "--tenant", tenantID}, db...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "tokens:create,tokens:read")
	assert.Contains(t, out, secret[:20], "the listing shows the non-secret prefix")
	assert.NotContains(t, out, secret[21:], "the listing never shows the secret")
	keyID := strings.Fields(strings.Split(out, "\n")[1])[0]

	_, errOut, err := run(t, append([]string{"apikey", "revoke", keyID}, db...)...)
	require.NoError(t, err)
	assert.Contains(t, errOut, "revoked")
	_, _, err = run(t, append([]string{"apikey", "revoke", keyID}, db...)...)
	assert.Error(t, err, "a revoked key cannot be revoked again")

	_, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenantID, "--scopes", "tokens:everything"}, db...)...)
	assert.ErrorContains(t, err, "unknown scope")
}

func TestServeRefusesUnmigratedSchema(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	_, _, err := run(t, "serve", "--database-url", emptyDatabase(t), "--kek-uri", kek, "--listen", "127.0.0.1:0")
	assert.ErrorContains(t, err, "run `cardvault migrate` first")
}

func TestServeRefusesAKEKThatCannotOpenTheKeysets(t *testing.T) {
	_, kekA := vaulttest.KEK(t)
	_, kekB := vaulttest.KEK(t)
	url := migratedDatabase(t)
	_, _, err := run(t, "tenant", "create", "kek-a", "--database-url", url, "--kek-uri", kekA)
	require.NoError(t, err)
	_, _, err = run(t, "serve", "--database-url", url, "--kek-uri", kekB, "--listen", "127.0.0.1:0")
	assert.ErrorContains(t, err, "cannot open the tenant keysets")
}

func TestConfigIsValidatedUpFront(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no database", []string{"--kek-uri", kek}, "VAULT_DATABASE_URL"},
		{"no KEK", []string{"--database-url", dbURL}, "VAULT_KEK_URI"},
		{"bad listen", []string{"--database-url", dbURL, "--kek-uri", kek, "--listen", "8080"}, "VAULT_LISTEN"},
		{"bad CVC TTL", []string{"--database-url", dbURL, "--kek-uri", kek, "--cvc-ttl", "forever"}, "VAULT_CVC_TTL"},
		{"CVC TTL too long", []string{"--database-url", dbURL, "--kek-uri", kek, "--cvc-ttl", "48h"}, "VAULT_CVC_TTL"},
		{"bad log level", []string{"--database-url", dbURL, "--kek-uri", kek, "--log-level", "loud"}, "VAULT_LOG_LEVEL"},
		{"unknown KEK scheme", []string{"--database-url", dbURL, "--kek-uri", "s3://bucket/key"}, "root KEK"},
		{"bad console switch", []string{"--database-url", dbURL, "--kek-uri", kek, "--console", "maybe"}, "VAULT_CONSOLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VAULT_DATABASE_URL", "")
			t.Setenv("VAULT_KEK_URI", "")
			_, _, err := run(t, append([]string{"serve"}, tt.args...)...)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestMigrateIsSafeFromSeveralReplicasAtOnce(t *testing.T) {
	url := emptyDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = run(t, "migrate", "--database-url", url)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	_, kek := vaulttest.KEK(t)
	_, _, err := run(t, "tenant", "create", "after-migrate", "--database-url", url, "--kek-uri", kek)
	assert.NoError(t, err, "the schema is complete after concurrent migrations")
}

func mustUUID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	require.NoError(t, err)
	return id
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
