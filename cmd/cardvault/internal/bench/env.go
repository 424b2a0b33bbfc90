package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

// stripeKey is the secret key of the bench's simulated Stripe account.
const stripeKey = "sk_test_cardvaultBench"

// environment is everything a bench run measures against. close undoes it.
type environment struct {
	dbURL      string
	pgVersion  string
	durability string // the server's fsync, synchronous_commit, shared_buffers and max_wal_size
	pgPID      int    // the postmaster when the server runs on this machine, else 0
	tenantID   uuid.UUID
	apiKey     string
	pool       *pgxpool.Pool // the baselines' own pool, Concurrency connections
	sim        *stripesim.Server
	child      *e2e.Vault
	replicas   []*e2e.Vault     // --replicas beyond the first (child), against the same database
	dest       *e2e.Destination // the forward phase's destination
	debugAddr  string           // the vault's pprof listener, "" unless profiling
	preload    Preload          // what --preload seeded
	preIDs     []uuid.UUID      // a sample of the preloaded tokens
	cardFile   []byte           // the file import phase's encrypted card file
	closers    []func()
}

// close releases what setup made, in reverse order.
func (e *environment) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// setup makes a fresh database with a provisioned tenant and API key, the
// baseline table, a seeded Stripe simulator, the forward phase's loopback
// destination and a running vault child.
// On error the returned env (if not nil) still needs close.
func setup(ctx context.Context, o Options, tmp string) (*environment, error) {
	e := &environment{}
	dbURL, drop, err := database(ctx, o.DatabaseURL, tmp)
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
	if e.tenantID, e.apiKey, err = o.Provision(ctx, dbURL, kekURI); err != nil {
		return e, err
	}
	if o.ImportKey != nil {
		pub, err := o.ImportKey(ctx, dbURL, kekURI, e.tenantID)
		if err != nil {
			return e, fmt.Errorf("the tenant's import key: %w", err)
		}
		if e.cardFile, err = cardFile(pub, o.FileImportCards); err != nil {
			return e, err
		}
	}
	if err := e.openPool(ctx, o.Concurrency); err != nil {
		return e, err
	}
	if o.Preload > 0 {
		if err := e.seed(ctx, o, kekURI); err != nil {
			return e, fmt.Errorf("preloading: %w", err)
		}
	}
	if e.sim, err = stripesim.Start("127.0.0.1:0", stripesim.Config{APIKeys: []string{stripeKey}}); err != nil {
		return e, err
	}
	e.closers = append(e.closers, func() { _ = e.sim.Close() })
	e.sim.Seed(stripesim.SeedSpec{Customers: max(1, o.ImportCards/10), PaymentMethods: o.ImportCards, Seed: 1})
	destDir := filepath.Join(tmp, "destination") // its certificate alone: the child's SSL_CERT_DIR
	if err := os.Mkdir(destDir, 0o755); err != nil {
		return e, err
	}
	if e.dest, err = e2e.StartDestination(destDir); err != nil {
		return e, fmt.Errorf("the forward phase's destination: %w", err)
	}
	e.closers = append(e.closers, e.dest.Close)
	return e, e.startVault(ctx, o, kekURI)
}

// startVault runs `cardvault serve` on a loopback port and waits until it
// is ready. The child is configured only through its environment: the
// bench's database and KEK, imports unthrottled against the simulator, no
// per-key rate limit, an in-flight cap above what the bench sends, and
// forwards allowed to loopback destinations with the bench destination's
// certificate as its only trusted root (SSL_CERT_FILE: the system roots of
// a Go program on Linux); its public URL is its own address. The kernel
// sends it SIGTERM if the bench dies.
func (e *environment) startVault(ctx context.Context, o Options, kekURI string) error {
	env := []string{
		"VAULT_DATABASE_URL=" + e.dbURL,
		"VAULT_KEK_URI=" + kekURI,
		"VAULT_STRIPE_API_BASE=" + e.sim.URL(),
		"VAULT_IMPORT_RATE=0",
		"VAULT_IMPORT_CONCURRENCY=" + strconv.Itoa(o.ImportConcurrency),
		"VAULT_RATE_LIMIT=0", // the per-key limit would measure the limiter, not the vault
		"VAULT_MAX_INFLIGHT=" + strconv.Itoa(max(256, 2*o.Concurrency+o.ImportConcurrency)),
		"VAULT_LOG_LEVEL=info",
		"VAULT_EGRESS_ALLOW_LOOPBACK=true",
		"SSL_CERT_FILE=" + e.dest.CertFile(),
		"SSL_CERT_DIR=" + filepath.Dir(e.dest.CertFile()),
	}
	if o.Profile {
		port, err := e2e.FreePort()
		if err != nil {
			return err
		}
		e.debugAddr = "127.0.0.1:" + strconv.Itoa(port)
		env = append(env, "VAULT_DEBUG_LISTEN="+e.debugAddr)
	}
	cmd, err := childCommand(o)
	if err != nil {
		return err
	}
	e.child, err = e2e.StartVault(ctx, e2e.VaultOptions{Command: cmd, Env: env, LogPath: filepath.Join(o.Out, "vault.log"),
		ParentDeathSignal: syscall.SIGTERM, StopGrace: o.StopGrace + 5*time.Second})
	if e.child != nil {
		e.closers = append(e.closers, e.child.Stop)
	}
	for r := 2; err == nil && r <= o.Replicas; r++ {
		if cmd, err = childCommand(o); err != nil {
			return err
		}
		plain := env[:len(env):len(env)]
		if o.Profile {
			plain = env[:len(env)-1] // the pprof listener is the first replica's
		}
		var v *e2e.Vault
		v, err = e2e.StartVault(ctx, e2e.VaultOptions{Command: cmd, Env: plain, LogPath: filepath.Join(o.Out, fmt.Sprintf("vault-%d.log", r)),
			ParentDeathSignal: syscall.SIGTERM, StopGrace: o.StopGrace + 5*time.Second})
		if v != nil {
			e.replicas = append(e.replicas, v)
			e.closers = append(e.closers, v.Stop)
		}
	}
	return err
}

// vaults returns every vault process of the run, the first one first.
func (e *environment) vaults() []*e2e.Vault {
	return append([]*e2e.Vault{e.child}, e.replicas...)
}

// vaultURLs returns the base URL of every vault process of the run, the
// first one first.
func (e *environment) vaultURLs() []string {
	var urls []string
	for _, v := range e.vaults() {
		urls = append(urls, v.URL())
	}
	return urls
}

// childCommand returns o's child command, or this executable's `serve`.
func childCommand(o Options) (*exec.Cmd, error) {
	if o.ChildCommand != nil {
		return o.ChildCommand()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(self, "serve"), nil
}

// describeServer records the server's version, durability and size settings.
func (e *environment) describeServer(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return fmt.Errorf("bench database: %w", err)
	}
	defer conn.Close(ctx)
	var fsync, syncCommit, buffers, wal, walCompression string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('shared_buffers'), current_setting('max_wal_size'),
		current_setting('wal_compression')`).
		Scan(&e.pgVersion, &fsync, &syncCommit, &buffers, &wal, &walCompression)
	e.durability = "fsync=" + fsync + " synchronous_commit=" + syncCommit + " shared_buffers=" + buffers +
		" max_wal_size=" + wal + " wal_compression=" + walCompression
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
	if !strings.HasPrefix(host, "/") && !vault.IsLoopbackHost(host) {
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
	parent, err := e2e.ParentPID(backend)
	if err != nil {
		return 0
	}
	return parent
}

// openPool opens the baselines' pool and creates bench_tokens and
// bench_audit, copies of the tokens and audit tables with the same columns,
// checks and indexes.
func (e *environment) openPool(ctx context.Context, conns int) error {
	cfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		return err
	}
	cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
	if e.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	e.closers = append(e.closers, e.pool.Close)
	if _, err = e.pool.Exec(ctx, `CREATE TABLE bench_tokens (LIKE tokens INCLUDING ALL)`); err != nil {
		return err
	}
	_, err = e.pool.Exec(ctx, benchAuditSQL)
	return err
}

// dropInsertTable drops bench_tokens once baseline-insert is done with it,
// so that the phases after it compete for the cache with the vault's own
// tables only, as on a production server (a preloaded copy doubled the
// token rows in memory). It returns the database's error.
func (e *environment) dropInsertTable(ctx context.Context) error {
	_, err := e.pool.Exec(ctx, `DROP TABLE bench_tokens`)
	return err
}

// serverSettings sizes the private server for the machine's memory (memGB)
// as one would size a production server for a database of millions of
// tokens (a --preload of 10,000,000 is about 38 GB): shared_buffers a
// quarter of the memory (128 MB to 8 GB), the planner told the page cache
// holds half, and WAL room for a checkpoint every 15 minutes rather than
// every gigabyte written (at PostgreSQL's defaults, 128 MB and 1 GB, a
// large preload's phases checkpointed every 5–22 s), and the full-page
// images written after each checkpoint compressed (lz4), as
// docs/scaling.md recommends. Durability settings stay at their
// defaults (fsync, synchronous_commit and full_page_writes on). The
// baselines run on the same server.
func serverSettings(memGB float64) []string {
	mb := func(f float64) string { return strconv.Itoa(int(f*1024)) + "MB" }
	return []string{
		"shared_buffers=" + mb(min(max(memGB/4, 0.125), 8)),
		"effective_cache_size=" + mb(max(memGB/2, 0.5)),
		"max_wal_size=8GB", "checkpoint_timeout=15min", "wal_compression=lz4",
	}
}

// database creates a fresh database named cardvault_bench_<hex> on the
// server adminURL names, or on a private server started under tmp when
// adminURL is "". It returns the database's URL and a func that drops it
// (and stops the private server, removing its files).
func database(ctx context.Context, adminURL, tmp string) (string, func(), error) {
	stop := func() {}
	if adminURL == "" {
		logf, err := os.Create(filepath.Join(tmp, "postgres.log"))
		if err != nil {
			return "", nil, err
		}
		srv, err := pglocal.Start(ctx, filepath.Join(tmp, "pg"), pglocal.Options{Log: logf, Settings: serverSettings(e2e.MemTotalGB())})
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
	name, dbURL, err := databaseURL(adminURL)
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

// databaseURL returns a fresh database name and adminURL pointing at it.
func databaseURL(adminURL string) (string, string, error) {
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

// Preload describes what --preload seeded and what it weighs.
type Preload struct {
	Tokens      int     `json:"tokens"`
	AuditRows   int     `json:"audit_rows"`
	SeedSeconds float64 `json:"seed_seconds"`
	// TokenBytes is pg_total_relation_size('tokens') (heap, TOAST and
	// every index) per token; AuditBytes the same of audit_events per row.
	TokenBytes float64 `json:"token_bytes"`
	AuditBytes float64 `json:"audit_bytes"`
	// VacuumSeconds is how long the VACUUM (ANALYZE) and CHECKPOINT after
	// the seeding took (settleAfterLoad).
	VacuumSeconds float64 `json:"vacuum_seconds"`
	// PrewarmMB is how much of the token table's indexes the bench read
	// into shared buffers before the vault's phases, in PrewarmSeconds
	// (prewarm).
	PrewarmMB      float64 `json:"prewarm_mb"`
	PrewarmSeconds float64 `json:"prewarm_seconds"`
}

// settleAfterLoad brings the database to the state a vault that has held
// its data for a while is in, rather than one bulk load old: VACUUM
// (ANALYZE) sets the visibility map and the hint bits of every loaded
// page and the planner's statistics, which autovacuum would otherwise do
// during the phases, slowing every one of them, the baselines too;
// CHECKPOINT writes
// the load's dirty pages. A role that may not CHECKPOINT skips it. It
// returns the database's error.
func settleAfterLoad(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE)`); err != nil {
		return err
	}
	var pgErr *pgconn.PgError
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42501") {
		return err
	}
	return nil
}

// preloadSample is how many preloaded tokens the read phases draw from.
const preloadSample = 50_000

// preloadCardOffset numbers the preloaded cards apart from tokenize's and
// the update phase's.
const preloadCardOffset = 200_000_000

// seed stores o.Preload tokens and 5 × as many audit rows through the
// vault's code, copies the tokens into bench_tokens (so that baseline-insert
// inserts into a table of the same size), samples their ids and weighs the
// tables.
func (e *environment) seed(ctx context.Context, o Options, kekURI string) error {
	start := time.Now()
	fmt.Fprintf(o.Progress, "bench: preloading %d tokens and %d audit rows …\n", o.Preload, 5*o.Preload)
	err := o.Seed(ctx, e.dbURL, kekURI, e.tenantID, o.Preload, func(i int) (string, string) {
		return "pm_preload" + strconv.Itoa(i), e2e.CardNumber(preloadCardOffset + i)
	})
	if err != nil {
		return err
	}
	if sel, _ := selectPhases(o.Phases); sel[PhaseBaselineInsert] {
		if _, err := e.pool.Exec(ctx, `INSERT INTO bench_tokens SELECT * FROM tokens`); err != nil {
			return err
		}
	}
	e.preload = Preload{Tokens: o.Preload, AuditRows: 5 * o.Preload, SeedSeconds: round1(time.Since(start).Seconds())}
	fmt.Fprintf(o.Progress, "bench: seeded in %.1f s; vacuuming and checkpointing …\n", e.preload.SeedSeconds)
	vacuumed := time.Now()
	if err := settleAfterLoad(ctx, e.pool); err != nil {
		return err
	}
	e.preload.VacuumSeconds = round1(time.Since(vacuumed).Seconds())
	err = e.pool.QueryRow(ctx, `SELECT pg_total_relation_size('tokens')::float8 / greatest(count(*), 1) FROM tokens`).Scan(&e.preload.TokenBytes)
	if err == nil {
		// audit_events is partitioned: its own size is 0, its partitions hold the rows.
		err = e.pool.QueryRow(ctx, `SELECT (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
			WHERE inhparent = 'audit_events'::regclass)::float8 / greatest(count(*), 1) FROM audit_events`).Scan(&e.preload.AuditBytes)
	}
	if err != nil {
		return err
	}
	e.preload.TokenBytes, e.preload.AuditBytes = round1(e.preload.TokenBytes), round1(e.preload.AuditBytes)
	rows, err := e.pool.Query(ctx, `SELECT id FROM tokens ORDER BY random() LIMIT $1`, preloadSample)
	if err != nil {
		return err
	}
	e.preIDs, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	fmt.Fprintf(o.Progress, "bench: preloaded in %.1f s: %.0f bytes per token, %.0f per audit row\n",
		e.preload.SeedSeconds, e.preload.TokenBytes, e.preload.AuditBytes)
	return err
}
