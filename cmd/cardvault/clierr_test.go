package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// runLine runs the command line as main does and returns what it prints to
// stderr when it fails ("" when it succeeds).
func runLine(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	if execute(context.Background(), root, &errOut) == 0 {
		return ""
	}
	return errOut.String()
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run `go test ./cmd/cardvault -run %s -update` to create it", t.Name())
	assert.Equal(t, string(want), got, "the CLI's words changed: review, then `go test ./cmd/cardvault -run %s -update`", t.Name())
}

// errorFixture is a database holding what the error cases refer to: a
// tenant with tokens under an old (active) and a new (primary) data key,
// two API keys sharing a prefix, a revoked key and a destroyed tenant.
type errorFixture struct {
	flags   []string
	names   map[string]string // id as printed → placeholder in the golden file
	tenant  string
	gone    string
	revoked string
	oldKey  string
	newKey  string
}

func newErrorFixture(t *testing.T) *errorFixture {
	t.Helper()
	ctx := context.Background()
	kek, kekURI := vaulttest.KEK(t)
	url := migratedDatabase(t)
	svc := vaulttest.NewService(t, url, vaulttest.Options{KEK: kek})
	tenant, secret := vaulttest.Tenant(t, svc)
	actor := vaulttest.Actor(t, svc, secret)
	for i := range 3 {
		in := vault.TokenizeInput{Card: card.CardInput{Number: vaulttest.LuhnNumber("424242", 16, i), ExpMonth: "1", ExpYear: "2030"}}
		_, _, err := svc.Tokenize(ctx, actor, in)
		require.NoError(t, err)
	}
	old := primaryKey(t, svc, tenant)
	newKey, err := svc.RotateDataKey(ctx, vault.Operator(tenant), 0)
	require.NoError(t, err)
	f := &errorFixture{flags: []string{"--database-url", url, "--kek-uri", kekURI}, tenant: tenant.String(),
		oldKey: u32(old), newKey: u32(newKey)}
	f.names = map[string]string{f.tenant: "TENANT", f.oldKey: "OLD_KEY", f.newKey: "NEW_KEY"}
	f.addKeys(t, svc, tenant)
	gone, err := svc.CreateTenant(ctx, "gone")
	require.NoError(t, err)
	_, err = svc.DestroyTenant(ctx, gone.ID)
	require.NoError(t, err)
	f.gone, f.names[gone.ID.String()] = gone.ID.String(), "GONE_TENANT"
	return f
}

// addKeys makes two keys whose prefixes both start with abcd and a revoked
// key.
func (f *errorFixture) addKeys(t *testing.T, svc *postgres.Service, tenant uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	pool := vaulttest.Pool(t, f.flags[1])
	for i, prefix := range []string{"abcd000000000001", "abcd000000000002"} {
		_, k, err := svc.CreateAPIKey(ctx, tenant, []vault.Scope{vault.ScopeTokensRead}, "shared prefix")
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE api_keys SET prefix = $2 WHERE id = $1`, k.ID, prefix)
		require.NoError(t, err)
		f.names[k.ID.String()] = "SHARED_KEY_" + strconv.Itoa(i+1)
	}
	_, k, err := svc.CreateAPIKey(ctx, tenant, []vault.Scope{vault.ScopeTokensRead}, "revoked")
	require.NoError(t, err)
	_, err = svc.RevokeAPIKey(ctx, k.ID)
	require.NoError(t, err)
	f.revoked, f.names[k.ID.String()] = k.ID.String(), "REVOKED_KEY"
	f.names["cvk_"+k.Prefix+"_…"] = "cvk_REVOKED_PREFIX_…"
}

// primaryKey returns the tenant's primary data key id.
func primaryKey(t *testing.T, svc *postgres.Service, tenant uuid.UUID) uint32 {
	t.Helper()
	st, err := svc.KeyStatus(context.Background(), tenant, 365*24*time.Hour)
	require.NoError(t, err)
	for _, k := range st.Keys {
		if k.State == "primary" {
			return k.KeyID
		}
	}
	t.Fatal("no primary key")
	return 0
}

// placeholders replaces the fixture's random ids in s.
func (f *errorFixture) placeholders(s string) string {
	for id, name := range f.names {
		s = strings.ReplaceAll(s, id, name)
	}
	return s
}

// TestCLIErrorsNameTheObjectAndTheNextCommand prints the error of every
// refusal a person meets at the command line; each names what is wrong
// and the command (or flag) to run next, never a database message.
func TestCLIErrorsNameTheObjectAndTheNextCommand(t *testing.T) {
	for _, env := range []string{"VAULT_DATABASE_URL", "VAULT_KEK_URI", "STRIPE_API_KEY"} {
		t.Setenv(env, "")
	}
	f := newErrorFixture(t)
	unknown := "00000000-0000-4000-8000-00000000dead"
	cases := [][]string{
		{"apikey", "revoke", unknown},
		{"apikey", "revoke", "cvk_ffff0000"},
		{"apikey", "revoke", "cvk_abcd"},
		{"apikey", "revoke", "not-a-key!"},
		{"apikey", "revoke", f.revoked},
		{"apikey", "list", "--tenant", unknown},
		{"apikey", "list", "--tenant", "acme"},
		{"apikey", "create", "--tenant", f.tenant, "--scopes", "tokens:everything"},
		{"apikey", "create", "--tenant", unknown, "--scopes", "tokens:read"},
		{"apikey", "create"},
		{"tenant", "destroy", unknown, "--confirm"},
		{"tenant", "destroy", f.gone, "--confirm"},
		{"tenant", "destroy", f.tenant},
		{"tenants", "list"},
		{"keys", "retire", "--tenant", f.tenant, "--key", f.newKey},
		{"keys", "retire", "--tenant", f.tenant, "--key", f.oldKey},
		{"keys", "retire", "--tenant", f.tenant, "--key", "12345"},
		{"keys", "retire", "--tenant", unknown, "--key", "12345"},
		{"keys", "rotate", "--tenant", unknown},
		{"keys", "reencrypt", "--tenant", unknown},
		{"keys", "status", "--tenant", unknown},
		{"import", "watch", unknown},
		{"import", "watch", "last"},
		{"import", "stripe", "--tenant", unknown, "--api-key", "sk_test_x"},
		{"audit", "verify", "--tenant", unknown},
	}
	var b strings.Builder
	for _, args := range cases {
		line := runLine(t, append(args, f.flags...)...)
		require.NotEmpty(t, line, "%v must fail", args)
		writeCase(&b, f.placeholders(strings.Join(args, " ")), f.placeholders(line))
	}
	for _, c := range f.setupCases(t) {
		writeCase(&b, c.shown, f.placeholders(runLine(t, c.args...)))
	}
	t.Setenv("VAULT_OPERATOR", "") // no operator named
	for _, args := range [][]string{{"keys", "rotate", "--tenant", f.tenant}, {"tenant", "create", "acme"}} {
		line := runLine(t, append(args, f.flags...)...)
		require.NotEmpty(t, line, "%v must fail", args)
		writeCase(&b, f.placeholders(strings.Join(args, " ")), f.placeholders(line))
	}
	got := b.String()
	assert.NotContains(t, got, "no rows in result set")
	assert.NotContains(t, got, "resource_missing")
	for _, block := range strings.Split(strings.TrimSpace(got), "\n\n") {
		assert.Regexp(t, regexp.MustCompile("`cardvault [^`]+`|--[a-z]"), block, "names the next command or flag")
	}
	golden(t, "cli-errors.golden", got)
}

// setupCase is a command line whose arguments the golden file shows
// shortened.
type setupCase struct {
	shown string
	args  []string
}

// setupCases are the errors of a first setup: no database, no KEK, a
// database that does not answer or has no schema, a KEK that is missing or
// would be overwritten.
func (f *errorFixture) setupCases(t *testing.T) []setupCase {
	t.Helper()
	kekFile := filepath.Join(t.TempDir(), "kek.json")
	_, _, err := run(t, "kek", "create", "--out", kekFile)
	require.NoError(t, err)
	closed, err := e2e.FreePort() // nothing listens there
	require.NoError(t, err)
	port := strconv.Itoa(closed)
	empty := emptyDatabase(t)
	f.names[filepath.Dir(kekFile)], f.names["127.0.0.1:"+port], f.names[empty] = "DIR", "127.0.0.1:PORT", "EMPTY_DATABASE_URL"
	f.names["needs "+strconv.Itoa(latestMigration(t))+":"] = "needs LATEST:" // the golden file outlives the next migration
	return []setupCase{
		{"migrate", []string{"migrate"}},
		{"tenant list --database-url URL", []string{"tenant", "list", "--database-url", f.flags[1]}},
		{"tenant list --database-url postgres://postgres:secret@127.0.0.1:PORT/x --kek-uri KEK",
			[]string{"tenant", "list", "--database-url", "postgres://postgres:secret@127.0.0.1:" + port + "/x", "--kek-uri", f.flags[3]}},
		{"tenant list --database-url EMPTY_DATABASE_URL --kek-uri KEK", []string{"tenant", "list", "--database-url", empty, "--kek-uri", f.flags[3]}},
		{"tenant list --database-url URL --kek-uri local:///nonexistent/kek.json",
			[]string{"tenant", "list", "--database-url", f.flags[1], "--kek-uri", "local:///nonexistent/kek.json"}},
		{"kek create --out DIR/kek.json", []string{"kek", "create", "--out", kekFile}},
	}
}

func writeCase(b *strings.Builder, args, line string) {
	b.WriteString("$ cardvault " + args + "\n" + line + "\n")
}

// TestRevokeByThePrefixTheListingShows revokes keys by what `apikey list`
// prints in its PREFIX column, and by a shorter unique prefix.
func TestRevokeByThePrefixTheListingShows(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	db := []string{"--database-url", migratedDatabase(t), "--kek-uri", kek}
	out, _, err := run(t, append([]string{"tenant", "create", "prefixes"}, db...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)
	for range 2 {
		_, _, err = run(t, append([]string{"apikey", "create", "--tenant", tenant, "--scopes", "tokens:read"}, db...)...)
		require.NoError(t, err)
	}
	rows := listKeys(t, tenant, db)
	require.Len(t, rows, 2)

	_, errOut, err := run(t, append([]string{"apikey", "revoke", rows[0].prefix}, db...)...)
	require.NoError(t, err, "the PREFIX column as printed, cvk_…_…")
	assert.Contains(t, errOut, "revoked API key "+rows[0].id)
	short := strings.TrimPrefix(rows[1].prefix, "cvk_")[:8]
	_, errOut, err = run(t, append([]string{"apikey", "revoke", short}, db...)...)
	require.NoError(t, err, "8 hex digits without cvk_")
	assert.Contains(t, errOut, "revoked API key "+rows[1].id)
	for _, r := range listKeys(t, tenant, db) {
		assert.NotEqual(t, "-", r.revoked, "key %s is revoked", r.id)
	}
}

type keyRow struct{ id, prefix, revoked string }

// listKeys runs `apikey list` and returns its rows.
func listKeys(t *testing.T, tenant string, db []string) []keyRow {
	t.Helper()
	out, _, err := run(t, append([]string{"apikey", "list", "--tenant", tenant}, db...)...)
	require.NoError(t, err)
	var rows []keyRow
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		rows = append(rows, keyRow{id: f[0], prefix: f[1], revoked: f[4]})
	}
	return rows
}

// latestMigration returns the number of the newest migration file.
func latestMigration(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "migrations", "[0-9]*.sql"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	n, err := strconv.Atoi(strings.SplitN(filepath.Base(files[len(files)-1]), "_", 2)[0])
	require.NoError(t, err)
	return n
}
