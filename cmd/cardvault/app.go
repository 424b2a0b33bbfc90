package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cardvault/cardvault/crypto"
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
		return nil, fmt.Errorf("database: %w", err)
	}
	if err := checkSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	kek, err := crypto.OpenKEK(ctx, cfg.KEKURI)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("root KEK %s: %w", crypto.RedactKEKURI(cfg.KEKURI), err)
	}
	warnIfLocalKEK(log, cfg.KEKURI)
	tel := newTelemetry(cfg)
	svc, err := postgres.NewService(postgres.Config{Pool: pool, KEK: kek, CVCTTL: cfg.CVCTTL, KeyCacheTTL: cfg.KeyCacheTTL, Logger: log,
		Metrics: tel.Store()})
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
		return nil, fmt.Errorf("root KEK %s cannot open the tenant keysets (wrong or unreachable KEK?): %w",
			crypto.RedactKEKURI(cfg.KEKURI), err)
	}
	return &app{pool: pool, svc: svc, cfg: cfg, tel: tel}, nil
}

// checkSchema returns an error unless the schema is at this binary's version.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer conn.Release()
	return migrations.Check(ctx, conn.Conn())
}

// Close records the encryptions this process counted (a CLI re-encryption
// seals too) and releases the database pool.
func (a *app) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.svc.FlushKeyUsage(ctx) // best effort: the counts are advisory
	a.pool.Close()
}
