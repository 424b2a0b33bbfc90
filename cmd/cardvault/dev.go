package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/pglocal"
)

// devDatabase is the database `cardvault dev` uses on its private server.
const devDatabase = "cardvault"

func newDevCmd() *cobra.Command {
	var raw rawConfig
	var dir string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the vault for development: private PostgreSQL, dev KEK, tenant `dev` and a key with every scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), &raw, dir, cmd.OutOrStdout())
		},
	}
	raw.bindServer(cmd.Flags())
	cmd.Flags().StringVar(&dir, "dir", ".cardvault-dev", "where the private PostgreSQL and the dev KEK live")
	return cmd
}

// runDev prepares a complete development vault and serves it until ctx
// ends; a private PostgreSQL it started is stopped on the way out.
func runDev(ctx context.Context, raw *rawConfig, dir string, out io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if raw.databaseURL == "" {
		srv, err := startDevPostgres(ctx, dir)
		if err != nil {
			return err
		}
		defer srv.Stop() //nolint:errcheck // best effort on the way out
		raw.databaseURL = srv.URL(devDatabase)
	}
	if raw.kekURI == "" {
		if raw.kekURI, err = devKEK(dir); err != nil {
			return err
		}
	}
	return devServe(ctx, raw, out)
}

// devServe migrates, provisions tenant `dev` with a fresh all-scope key,
// prints how to call the vault, and serves.
func devServe(ctx context.Context, raw *rawConfig, out io.Writer) error {
	cfg, err := raw.parse(true)
	if err != nil {
		return err
	}
	if err := migrate(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	secret, err := devKey(ctx, a.svc)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	printWelcome(out, baseURL(ln.Addr()), secret)
	fmt.Fprintf(out, "Operator commands (keys, tenant, apikey) in another shell:\n\nexport VAULT_DATABASE_URL='%s' VAULT_KEK_URI='%s'\n\n",
		cfg.DatabaseURL, cfg.KEKURI)
	return serve(ctx, ln, a.svc, cfg, log)
}

// startDevPostgres starts (or restarts) the private server under dir and
// makes sure the dev database exists.
func startDevPostgres(ctx context.Context, dir string) (*pglocal.Server, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	srv, err := pglocal.Start(ctx, dir, pglocal.Options{Log: logf})
	if err != nil {
		return nil, fmt.Errorf("private PostgreSQL: %w", err)
	}
	if err := ensureDatabase(ctx, srv.URL("postgres"), devDatabase); err != nil {
		srv.Stop() //nolint:errcheck
		return nil, err
	}
	return srv, nil
}

// ensureDatabase creates database name through the server at adminURL
// unless it exists.
func ensureDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	return err
}

// devKEK returns the URI of the dev KEK under dir, creating it once.
func devKEK(dir string) (string, error) {
	path := filepath.Join(dir, "kek.json")
	if _, err := os.Stat(path); os.IsNotExist(err) {
		if err := crypto.CreateLocalKEK(path); err != nil {
			return "", err
		}
	}
	return "local://" + path, nil
}

// devKey returns a fresh all-scope API key of tenant `dev`, creating the
// tenant on first run.
func devKey(ctx context.Context, svc *vault.Service) (string, error) {
	t, err := svc.TenantByName(ctx, "dev")
	if vault.ErrorKind(err) == vault.KindNotFound {
		t, err = svc.CreateTenant(ctx, "dev")
	}
	if err != nil {
		return "", err
	}
	secret, _, err := svc.CreateAPIKey(ctx, t.ID, vault.AllScopes, "cardvault dev")
	return secret, err
}

// baseURL turns a listen address into a URL a local client can call.
func baseURL(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// printWelcome tells the developer where the vault is, its key and a ready
// Stripe-forward call with a public test card.
func printWelcome(out io.Writer, base, secret string) {
	fmt.Fprintf(out, `cardvault dev is running at %[1]s (Ctrl-C stops it and its PostgreSQL)

API key (tenant "dev", every scope): %[2]s

Replay what Stripe forwards to /cde-import:

curl -sS %[1]s/cde-import \
  -H 'User-Agent: Stripe' -H 'Content-Type: application/json' \
  -H 'X-API-Key: %[2]s' \
  -d '{"metadata":{"business_key":"pm_1DevExample"},"card":{"number":"4242424242424242","exp_month":"04","exp_year":"2033","cvc":"123","name":"John Doe"}}'

`, base, secret)
}
