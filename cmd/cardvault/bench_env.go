package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

// benchStripeKey is the secret key of the bench's simulated Stripe account.
const benchStripeKey = "sk_test_cardvaultBench"

// benchEnv is everything a bench run measures against. close undoes it.
type benchEnv struct {
	dbURL      string
	pgVersion  string
	durability string // the server's fsync and synchronous_commit settings
	pgPID      int    // the postmaster when the server runs on this machine, else 0
	tenantID   uuid.UUID
	apiKey     string
	pool       *pgxpool.Pool // the baselines' own pool, Concurrency connections
	sim        *stripesim.Server
	child      *vaultChild
	closers    []func()
}

// close releases what setupBench made, in reverse order.
func (e *benchEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// setupBench makes a fresh database with a provisioned tenant and API key,
// the baseline table, a seeded Stripe simulator and a running vault child.
// On error the returned env (if not nil) still needs close.
func setupBench(ctx context.Context, o benchOptions, tmp string) (*benchEnv, error) {
	e := &benchEnv{}
	dbURL, drop, err := benchDatabase(ctx, o.DatabaseURL, tmp)
	if err != nil {
		return nil, err
	}
	e.dbURL = dbURL
	e.closers = append(e.closers, drop)
	if err := e.describeServer(ctx); err != nil {
		return e, err
	}
	kekPath := filepath.Join(tmp, "kek.json")
	if err := crypto.CreateLocalKEK(kekPath); err != nil {
		return e, err
	}
	kekURI := "local://" + kekPath
	if e.tenantID, e.apiKey, err = provisionBench(ctx, dbURL, kekURI); err != nil {
		return e, err
	}
	if err := e.openPool(ctx, o.Concurrency); err != nil {
		return e, err
	}
	if e.sim, err = stripesim.Start("127.0.0.1:0", stripesim.Config{APIKeys: []string{benchStripeKey}}); err != nil {
		return e, err
	}
	e.closers = append(e.closers, func() { _ = e.sim.Close() })
	e.sim.Seed(stripesim.SeedSpec{Customers: max(1, o.ImportCards/10), PaymentMethods: o.ImportCards, Seed: 1})
	e.child, err = startVaultChild(ctx, o, childSettings{dbURL: dbURL, kekURI: kekURI, stripeBase: e.sim.URL()})
	if e.child != nil {
		e.closers = append(e.closers, e.child.stop)
	}
	return e, err
}

// describeServer records the server's version and durability settings.
func (e *benchEnv) describeServer(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return fmt.Errorf("bench database: %w", err)
	}
	defer conn.Close(ctx)
	var fsync, syncCommit string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit')`).Scan(&e.pgVersion, &fsync, &syncCommit)
	e.durability = "fsync=" + fsync + " synchronous_commit=" + syncCommit
	if err != nil {
		return err
	}
	e.pgPID = localPostmaster(ctx, conn)
	return nil
}

// localPostmaster returns the pid of the server's postmaster when conn's
// server runs on this machine (its backend is a local postgres process),
// and 0 otherwise.
func localPostmaster(ctx context.Context, conn *pgx.Conn) int {
	host := conn.Config().Host
	if !strings.HasPrefix(host, "/") && !isLoopbackHost(host) {
		return 0
	}
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return 0
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", backend))
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return 0
	}
	parent, err := procParent(backend)
	if err != nil {
		return 0
	}
	return parent
}

// openPool opens the baselines' pool and creates bench_tokens, a copy of the
// tokens table with the same columns, checks and indexes.
func (e *benchEnv) openPool(ctx context.Context, conns int) error {
	cfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		return err
	}
	cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
	if e.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	e.closers = append(e.closers, e.pool.Close)
	_, err = e.pool.Exec(ctx, `CREATE TABLE bench_tokens (LIKE tokens INCLUDING ALL)`)
	return err
}

// provisionBench migrates the database and makes the tenant and all-scope
// API key the vault child serves, with the code `cardvault dev` uses.
func provisionBench(ctx context.Context, dbURL, kekURI string) (uuid.UUID, string, error) {
	var raw rawConfig
	raw.bindServer(pflag.NewFlagSet("bench", pflag.ContinueOnError))
	raw.databaseURL, raw.kekURI, raw.listen = dbURL, kekURI, "127.0.0.1:0"
	cfg, err := raw.parse(true)
	if err != nil {
		return uuid.Nil, "", err
	}
	if err := migrate(ctx, dbURL); err != nil {
		return uuid.Nil, "", err
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return uuid.Nil, "", err
	}
	defer a.Close()
	return devKey(ctx, a.svc)
}

// benchDatabase creates a fresh database named cardvault_bench_<hex> on the
// server adminURL names, or on a private server started under tmp when
// adminURL is "". It returns the database's URL and a func that drops it
// (and stops the private server, removing its files).
func benchDatabase(ctx context.Context, adminURL, tmp string) (string, func(), error) {
	stop := func() {}
	if adminURL == "" {
		logf, err := os.Create(filepath.Join(tmp, "postgres.log"))
		if err != nil {
			return "", nil, err
		}
		srv, err := pglocal.Start(ctx, filepath.Join(tmp, "pg"), pglocal.Options{Log: logf})
		if err != nil {
			logf.Close()
			return "", nil, fmt.Errorf("private PostgreSQL: %w", err)
		}
		adminURL = srv.URL("postgres")
		stop = func() {
			_ = srv.Stop()
			_ = os.RemoveAll(srv.Dir) // differs from tmp/pg when pglocal relocated it
			logf.Close()
		}
	}
	name, dbURL, err := benchDatabaseURL(adminURL)
	if err != nil {
		stop()
		return "", nil, err
	}
	if err := adminExec(ctx, adminURL, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		stop()
		return "", nil, fmt.Errorf("creating the bench database: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, adminURL, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			fmt.Fprintf(os.Stderr, "bench: dropping database %s: %v\n", name, err)
		}
		stop()
	}
	return dbURL, drop, nil
}

// benchDatabaseURL returns a fresh database name and adminURL pointing at it.
func benchDatabaseURL(adminURL string) (string, string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", fmt.Errorf("--database-url must be a postgres:// URL")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "cardvault_bench_" + hex.EncodeToString(b[:])
	u.Path, u.RawPath = "/"+name, ""
	return name, u.String(), nil
}

// adminExec runs one statement on a fresh connection to adminURL.
func adminExec(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
