package main

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/vault/postgres"
)

// defaultPoolMaxConns is the size of the database pool when
// VAULT_DATABASE_URL does not set pool_max_conns. pgxpool's own default,
// max(4, CPUs), makes concurrent requests queue for a connection while
// PostgreSQL idles between commits: `cardvault bench` at concurrency 32 on
// 2 CPUs measured tokenize 398 → 521 rps and read 410 → 1257 rps going from
// 4 to 32 connections (16 measured alike, 64 no better).
const defaultPoolMaxConns = 32

// defaultConnectTimeout bounds a new database connection, to each host of
// the URL, when the URL sets no connect_timeout, so an unreachable database
// fails requests fast (503).
const defaultConnectTimeout = 5 * time.Second

// newPool opens the vault's database pool: pool_max_conns and the other
// pool_* settings of url win; without pool_max_conns the pool holds up to
// defaultPoolMaxConns connections. Its connections encode and scan
// uuid.UUID in binary (registerUUID).
//
// url may name several servers (postgres://u@h1:5432,h2:5432/vault): a new
// connection goes to the first that answers as a writable primary
// (target_session_attrs=read-write, the default here when the URL names more
// than one host and sets none), so after a failover the pool's new
// connections reach the new primary. A connection whose server turned into
// a standby, shuts down or fails on its own files is closed at its first
// such error (postgres.ConnectionUnusable), and the pool's other idle
// connections with it (they reach the same server), so the pool does not
// keep handing them out. It returns an error for a URL pgx cannot parse.
func newPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultPoolMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 { // no connect_timeout in the URL
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if hostCount(cfg.ConnConfig.Config) > 1 && !strings.Contains(url, "target_session_attrs") {
		cfg.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	}
	var r resetter
	cfg.ConnConfig.OnPgError = func(c *pgconn.PgConn, e *pgconn.PgError) bool {
		if postgres.ConnectionUnusable(e) {
			r.reset()
		}
		return keepConnection(c, e)
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUID(conn.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r.pool.Store(pool)
	return pool, nil
}

// resetter closes a pool's idle connections (pgxpool.Reset; connections
// in use are closed when released) once a connection found its server
// unusable: the others reach the same server. Resets are at least
// resetEvery apart, so a burst of such errors resets once.
type resetter struct {
	pool atomic.Pointer[pgxpool.Pool]
	last atomic.Int64 // unix nanoseconds of the last reset
}

const resetEvery = time.Second

func (r *resetter) reset() {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(resetEvery) || !r.last.CompareAndSwap(last, now) {
		return
	}
	if p := r.pool.Load(); p != nil {
		go p.Reset() // not on the connection's own reading goroutine
	}
}

// keepConnection is the pool's OnPgError: it reports false, closing the
// connection, for a FATAL error (pgx's own rule) and for an error that
// means the server can no longer serve the vault's writes.
func keepConnection(_ *pgconn.PgConn, e *pgconn.PgError) bool {
	return !strings.EqualFold(e.Severity, "FATAL") && !postgres.ConnectionUnusable(e)
}

// hostCount returns how many distinct servers (host and port) cfg names;
// pgx keeps the second and later ones, and sslmode=prefer's plain-text
// retry of each, in Fallbacks.
func hostCount(cfg pgconn.Config) int {
	type server struct {
		host string
		port uint16
	}
	seen := map[server]bool{{cfg.Host, cfg.Port}: true}
	for _, f := range cfg.Fallbacks {
		seen[server{f.Host, f.Port}] = true
	}
	return len(seen)
}
