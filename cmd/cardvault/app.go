package main

import (
	"context"
	"fmt"
	"log/slog"
	neturl "net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/egress"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/migrations"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// The one implementation serves every caller's role; the compiler checks it
// here, where it is wired in.
var (
	_ httpapi.Service     = (*postgres.Service)(nil)
	_ vault.ImportQueue   = (*postgres.Service)(nil)
	_ vault.WebhookOutbox = (*postgres.Service)(nil)
)

// app is an opened vault: its pool and service, and its metrics when
// cfg turns them on. Close releases the pool.
type app struct {
	pool *pgxpool.Pool
	svc  *postgres.Service
	cfg  config
	tel  *telemetry // nil when metrics are off
}

// openApp connects to the database, refuses an unmigrated schema, opens the
// root KEK and proves it can unwrap the tenant keysets. Each failure comes
// back as an error that says what to fix.
func openApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	return open(ctx, cfg, log, true)
}

// open is openApp, with the KEK check optional for the one command that must
// start while keysets are wrapped by two KEKs: a resumed rotate-root.
func open(ctx context.Context, cfg config, log *slog.Logger, checkKEK bool) (*app, error) {
	pool, err := newPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, actionf(err, "VAULT_DATABASE_URL (--database-url) is not a PostgreSQL URL: %v; it looks like postgres://USER@HOST:5432/DB", err)
	}
	if err := checkSchema(ctx, pool, cfg.DatabaseURL); err != nil {
		pool.Close()
		return nil, err
	}
	kek, err := crypto.OpenKEK(ctx, cfg.KEKURI)
	if err != nil {
		pool.Close()
		return nil, errOpenKEK("root KEK", "VAULT_KEK_URI (--kek-uri)", cfg.KEKURI, err)
	}
	kekNoticeFrom(ctx).warn(log, cfg.KEKURI)
	tel := newTelemetry(cfg)
	svc, err := postgres.NewService(postgres.Config{Pool: pool, KEK: kek, CVCTTL: cfg.CVCTTL, KeyCacheTTL: cfg.KeyCacheTTL, Logger: log,
		Egress: newEgress(cfg, 0), AllowLoopback: cfg.EgressAllowLoopback,
		Metrics: tel.Store(), ForwardMetrics: tel.Forwards(), AccessFailureWindow: cfg.AuditFailureWindow})
	if err != nil {
		pool.Close()
		return nil, err
	}
	tel.watch(svc, pool, cfg.Cryptoperiod)
	if !checkKEK {
		return &app{pool: pool, svc: svc, cfg: cfg, tel: tel}, nil
	}
	if err := svc.CheckKEK(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("root KEK %s cannot open the tenant keysets (wrong or unreachable KEK?): %w; "+
			"after `cardvault keys rotate-root`, set VAULT_KEK_URI to the new KEK", crypto.RedactKEKURI(cfg.KEKURI), err)
	}
	if n, err := svc.BackfillKeyVersions(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("recording the key versions of tenants made before they were tracked: %w", err)
	} else if n > 0 {
		log.Info("recorded the key versions of keysets made before they were tracked", "keysets", n)
	}
	return &app{pool: pool, svc: svc, cfg: cfg, tel: tel}, nil
}

// newEgress returns the guarded client the vault sends through (forwards,
// webhooks), configured from cfg, with timeout as its exchange timeout
// (egress's default when 0).
func newEgress(cfg config, timeout time.Duration) *egress.Client {
	return egress.New(egress.Config{AllowLoopback: cfg.EgressAllowLoopback, Timeout: timeout})
}

// errDatabase says the database at rawURL cannot be reached, without its
// password, and what to check.
func errDatabase(rawURL string, err error) error {
	shown := "VAULT_DATABASE_URL"
	if u, perr := neturl.Parse(rawURL); perr == nil && u.Host != "" {
		shown = u.Redacted()
	}
	return actionf(err, "database: cannot connect to %s: %v\nis PostgreSQL running there, and is VAULT_DATABASE_URL (--database-url) right? "+
		"(`make dev` prints the URL of its own)", shown, err)
}

// errOpenKEK says a KEK named by uri (the setting named by setting) cannot
// be opened, and how a local one is made.
func errOpenKEK(what, setting, uri string, err error) error {
	return actionf(err, "%s %s cannot be opened: %v; check %s (`cardvault kek create --out FILE` makes a local one for development)",
		what, crypto.RedactKEKURI(uri), err, setting)
}

// checkSchema returns an error unless the schema is at this binary's
// version; url names the database when it cannot be reached.
func checkSchema(ctx context.Context, pool *pgxpool.Pool, url string) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return errDatabase(url, err)
	}
	defer conn.Release()
	return migrations.Check(ctx, conn.Conn())
}

// Close records the encryptions this process counted (a CLI re-encryption
// seals too) and releases the database pool.
func (a *app) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.svc.FlushKeyUsage(ctx)       // best effort: the counts are advisory
	_ = a.svc.FlushAccessFailures(ctx) // its failure is logged
	a.pool.Close()
}
