// Package vaulttest gives each test package its own freshly migrated
// PostgreSQL database. Use it from TestMain:
//
//	var dbURL string
//
//	func TestMain(m *testing.M) { vaulttest.Main(m, "vault", &dbURL) }
//
// The server is, in order of preference: the one VAULT_TEST_DATABASE_URL
// points at; the one on 127.0.0.1:5432 if user postgres can log in without a
// password; or a private throwaway server started with pglocal from the
// machine's PostgreSQL binaries.
package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/migrations"
	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

// EnvURL names the environment variable that points tests at a server: a
// URL or keyword/value DSN of a role allowed to create databases. Test
// databases are created on the same server.
const EnvURL = "VAULT_TEST_DATABASE_URL"

// defaultURL is the conventional local server tried when EnvURL is unset (a
// variable for tests).
var defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const probeTimeout = 2 * time.Second

// NewDatabase creates a fresh database for the test package called name,
// applies every migration to it and returns its URL and a cleanup that
// drops it (and stops the private server if one was started). The database
// is called "cardvault_test_<name>_<random hex>". It returns an error when
// no server can be had or the database cannot be created or migrated.
func NewDatabase(ctx context.Context, name string) (string, func(), error) {
	adminURL, stopServer, err := adminServer(ctx)
	if err != nil {
		return "", nil, err
	}
	dbName, err := databaseName(name)
	if err != nil {
		stopServer()
		return "", nil, err
	}
	dbURL, err := createDatabase(ctx, adminURL, dbName)
	if err != nil {
		stopServer()
		return "", nil, err
	}
	cleanup := func() {
		if err := dropDatabase(adminURL, dbName); err != nil {
			fmt.Fprintf(os.Stderr, "vaulttest: %v\n", err)
		}
		stopServer()
	}
	return dbURL, cleanup, nil
}

// Main runs a test package against its own database: it creates the
// database with NewDatabase, stores its URL in *dbURL, runs the tests,
// drops the database and exits with the tests' exit code. When no database
// can be had it prints why, and how to get one, and exits with status 1.
// A binary started only to fuzz (see fuzzingOnly) gets no database.
func Main(m *testing.M, name string, dbURL *string) {
	if fuzzingOnly() {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	u, cleanup, err := NewDatabase(ctx, name)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vaulttest: no test database for package %s: %v\n"+
			"vaulttest: set %s, run PostgreSQL on 127.0.0.1:5432 with user postgres trusted, "+
			"or install the server binaries (`make postgres-check` does; or: apt-get install postgresql)\n",
			name, err, EnvURL)
		os.Exit(1)
	}
	*dbURL = u
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Pool opens a pgxpool on url, checks that it can connect, and closes it
// when tb's test ends. It fails tb if it cannot connect.
func Pool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		tb.Fatalf("vaulttest: pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		tb.Fatalf("vaulttest: pool: %v", err)
	}
	return pool
}

// Truncate empties every table in schema public except schema_version (the
// migration bookkeeping), restarting identities, for isolation between the
// tests of one package. It fails tb on error.
func Truncate(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `select format('%I.%I', schemaname, tablename) from pg_tables
		where schemaname = 'public' and tablename <> 'schema_version' order by 1`)
	if err != nil {
		tb.Fatalf("vaulttest: truncate: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("vaulttest: truncate: %v", err)
	}
	if len(tables) == 0 {
		return
	}
	if _, err := pool.Exec(ctx, "truncate table "+strings.Join(tables, ", ")+" restart identity cascade"); err != nil {
		tb.Fatalf("vaulttest: truncate: %v", err)
	}
}

// adminServer picks the server (see the package doc) and returns a URL to
// connect to it with rights to create databases, and a func that stops the
// server if it is a private one (else does nothing). It returns an error
// when EnvURL is set but unusable, or when the private server cannot start.
func adminServer(ctx context.Context) (string, func(), error) {
	noop := func() {}
	if u := os.Getenv(EnvURL); u != "" {
		if err := ping(ctx, u, 10*time.Second); err != nil {
			return "", nil, fmt.Errorf("%s: %w", EnvURL, err)
		}
		return u, noop, nil
	}
	err := ping(ctx, defaultURL, probeTimeout)
	if err == nil {
		return defaultURL, noop, nil
	}
	if !errors.Is(err, errNotListening) {
		fmt.Fprintf(os.Stderr, "vaulttest: 127.0.0.1:5432 answers but is unusable (%v); starting a private server\n", err)
	}
	return startPrivate(ctx)
}

var errNotListening = errors.New("nothing listening")

// ping connects to dsn and pings it within timeout. Against a TCP host it
// first checks that something listens, returning errNotListening if not.
func ping(ctx context.Context, dsn string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(cfg.Host, "/") {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
		if err != nil {
			return fmt.Errorf("%w: %v", errNotListening, err)
		}
		c.Close()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// startPrivate starts a throwaway pglocal server in a new temporary
// directory and returns its admin URL and a func that stops it and removes
// its files. It returns pglocal's error (e.g. pglocal.ErrNoBinaries).
func startPrivate(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "cardvault-pg-")
	if err != nil {
		return "", nil, err
	}
	srv, err := pglocal.Start(ctx, dir, pglocal.Options{NoSync: true})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("private server: %w", err)
	}
	stop := func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "vaulttest: %v\n", err)
		}
		os.RemoveAll(srv.Dir) // relocated (root, unreachable $TMPDIR) or dir
		os.RemoveAll(dir)
	}
	return srv.URL("postgres"), stop, nil
}

// databaseName returns "cardvault_test_<name>_<8 random hex>", with name
// lowercased, reduced to [a-z0-9_] and shortened to fit PostgreSQL's 63-byte
// identifier limit.
func databaseName(name string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	clean := []byte(strings.ToLower(name))
	for i, c := range clean {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			clean[i] = '_'
		}
	}
	const maxName = 63 - len("cardvault_test_") - len("_12345678")
	if len(clean) > maxName {
		clean = clean[:maxName]
	}
	return "cardvault_test_" + string(clean) + "_" + hex.EncodeToString(b[:]), nil
}

// createDatabase creates dbName on the server behind adminURL (from
// template0, UTF8, C collation, so every server gives the same behaviour),
// migrates it, and returns its URL.
func createDatabase(ctx context.Context, adminURL, dbName string) (string, error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(context.Background())
	ident := pgx.Identifier{dbName}.Sanitize()
	if _, err := admin.Exec(ctx, "create database "+ident+
		" template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C'"); err != nil {
		return "", fmt.Errorf("create database %s: %w", dbName, err)
	}
	dbURL, err := withDatabase(adminURL, dbName)
	if err == nil {
		err = migrate(ctx, dbURL)
	}
	if err != nil {
		if derr := dropDatabase(adminURL, dbName); derr != nil {
			err = fmt.Errorf("%w (and %v)", err, derr)
		}
		return "", err
	}
	return dbURL, nil
}

// migrate applies the migrations to the database at dbURL.
func migrate(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return migrations.Migrate(ctx, conn)
}

// dropDatabase drops dbName, disconnecting any sessions still using it. It
// returns an error when the database cannot be dropped.
func dropDatabase(adminURL, dbName string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", dbName, err)
	}
	defer admin.Close(context.Background())
	ident := pgx.Identifier{dbName}.Sanitize()
	_, err = admin.Exec(ctx, "drop database if exists "+ident+" with (force)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42601" { // before PostgreSQL 13: no FORCE
		_, err = admin.Exec(ctx, "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", dbName)
		if err == nil {
			_, err = admin.Exec(ctx, "drop database if exists "+ident)
		}
	}
	if err != nil {
		return fmt.Errorf("drop database %s: %w", dbName, err)
	}
	return nil
}

// withDatabase returns dsn (a postgres:// URL or a keyword/value DSN) with
// its database replaced by dbName.
func withDatabase(dsn, dbName string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path, u.RawPath = "/"+dbName, ""
		return u.String(), nil
	}
	return dsn + " dbname=" + dbName, nil
}
