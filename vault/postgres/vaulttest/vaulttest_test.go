package vaulttest

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

var dbURL string

func TestMain(m *testing.M) { Main(m, "vaulttest", &dbURL) }

// checkFreshDatabase checks that url is a migrated database (schema_version
// exists) with no rows in any other table of schema public.
func checkFreshDatabase(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	pool := Pool(t, url)
	var hasVersion bool
	if err := pool.QueryRow(ctx, "select to_regclass('public.schema_version') is not null").Scan(&hasVersion); err != nil || !hasVersion {
		t.Fatalf("schema_version table missing (migrations not run?): %v", err)
	}
	rows, _ := pool.Query(ctx, `select format('%I.%I', schemaname, tablename) from pg_tables
		where schemaname = 'public' and tablename <> 'schema_version'`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		var n int
		if err := pool.QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows, %v", table, n, err)
		}
	}
}

// checkNewDatabase checks that NewDatabase gives a migrated, empty
// database with the expected name, and returns its URL and cleanup.
func checkNewDatabase(t *testing.T) (string, func()) {
	t.Helper()
	url, cleanup, err := NewDatabase(context.Background(), "My-Pkg/v2.")
	if err != nil {
		t.Fatalf("NewDatabase: %v", err)
	}
	if name := databaseOf(t, url); !regexp.MustCompile(`^cardvault_test_my_pkg_v2__[0-9a-f]{8}$`).MatchString(name) {
		t.Errorf("database name %q", name)
	}
	checkFreshDatabase(t, url)
	return url, cleanup
}

func databaseOf(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// TestNewDatabase checks that cleanup drops the database (or, if
// NewDatabase had to start a private server, stops that server).
func TestNewDatabase(t *testing.T) {
	ctx := context.Background()
	url, cleanup := checkNewDatabase(t)
	Pool(t, url) // still connected at cleanup, which must drop the database anyway
	adminURL, _ := withDatabase(url, "postgres")
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	cleanup()
	var exists bool
	err = admin.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", databaseOf(t, url)).Scan(&exists)
	switch {
	case err != nil:
		checkGone(t, url)
	case exists:
		t.Errorf("database still exists after cleanup")
	}
}

// checkGone checks that nothing answers at url any more.
func checkGone(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Errorf("server still answers after cleanup")
	}
}

// TestNewDatabasePrivateServer covers the path taken when nothing answers
// on the default address: a throwaway pglocal server, stopped by cleanup.
func TestNewDatabasePrivateServer(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skipf("skipping: %s is set", EnvURL)
	}
	if _, err := pglocal.FindBinDir(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	saved := defaultURL
	defaultURL = "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable"
	defer func() { defaultURL = saved }()

	url, cleanup := checkNewDatabase(t)
	cleanup()
	checkGone(t, url)
}

func TestMainDatabaseAndTruncate(t *testing.T) {
	ctx := context.Background()
	checkFreshDatabase(t, dbURL)
	pool := Pool(t, dbURL)
	if _, err := pool.Exec(ctx, `create table parent (id serial primary key);
		create table child (parent_id int references parent);
		insert into parent default values; insert into child values (1)`); err != nil {
		t.Fatal(err)
	}
	var before int32
	if err := pool.QueryRow(ctx, "select count(*) from schema_version").Scan(&before); err != nil {
		t.Fatal(err)
	}
	Truncate(t, pool)
	checkFreshDatabase(t, dbURL)
	var after int32
	if err := pool.QueryRow(ctx, "select count(*) from schema_version").Scan(&after); err != nil || after != before {
		t.Errorf("schema_version rows: %d before, %d after Truncate (%v)", before, after, err)
	}
	var id int
	if err := pool.QueryRow(ctx, "insert into parent default values returning id").Scan(&id); err != nil || id != 1 {
		t.Errorf("identity not restarted: id %d, %v", id, err)
	}
}

func TestDatabaseName(t *testing.T) {
	long := make([]byte, 100)
	for i := range long {
		long[i] = 'x'
	}
	name, err := databaseName(string(long))
	if err != nil || len(name) != 63 {
		t.Fatalf("databaseName(100 x) = %q (%d bytes), %v", name, len(name), err)
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p@h:5/old?sslmode=disable": "postgres://u:p@h:5/new?sslmode=disable",
		"postgresql://h/":                        "postgresql://h/new",
		"host=h user=u dbname=old":               "host=h user=u dbname=old dbname=new",
	} {
		if got, err := withDatabase(in, "new"); err != nil || got != want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestEnvURLUnusable(t *testing.T) {
	t.Setenv(EnvURL, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable")
	if _, _, err := NewDatabase(context.Background(), "x"); err == nil {
		t.Fatal("NewDatabase with an unreachable VAULT_TEST_DATABASE_URL succeeded")
	}
}
