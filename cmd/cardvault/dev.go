package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/pglocal"
)

// devDatabase is the database `cardvault dev` uses on its private server.
const devDatabase = "cardvault"

// devMetricsListen is where `cardvault dev` serves /metrics unless
// VAULT_METRICS_LISTEN says otherwise.
const devMetricsListen = "127.0.0.1:9464"

func newDevCmd() *cobra.Command {
	var raw rawConfig
	var dir string
	var simCards int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the vault for development: private PostgreSQL, dev KEK, tenant `dev` and a key with every scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if simCards < 0 || simCards > 1_000_000 {
				return fmt.Errorf("--stripe-simulator %d must be between 0 and 1000000 cards", simCards)
			}
			return runDev(cmd.Context(), &raw, dir, simCards, cmd.OutOrStdout())
		},
	}
	raw.bindServer(cmd.Flags())
	cmd.Flags().StringVar(&dir, "dir", ".cardvault-dev", "where the private PostgreSQL and the dev KEK live")
	cmd.Flags().IntVar(&simCards, "stripe-simulator", 0, "also run a simulated Stripe account holding N test cards, and point imports at it")
	return cmd
}

// runDev prepares a complete development vault and serves it until ctx
// ends; a private PostgreSQL it started is stopped on the way out.
func runDev(ctx context.Context, raw *rawConfig, dir string, simCards int, out io.Writer) error {
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
	if simCards > 0 {
		sim, err := startDevStripe(simCards)
		if err != nil {
			return err
		}
		defer sim.Close() //nolint:errcheck // best effort on the way out
		raw.imp.stripeAPIBase = sim.URL()
	}
	return devServe(ctx, raw, simCards > 0, out)
}

// devStripeKey is the secret key of the simulated Stripe account.
const devStripeKey = "sk_test_cardvaultDevSimulator"

// startDevStripe serves a simulated Stripe account of n test cards (every
// 50th payment method a Link one, which imports skip) on loopback.
func startDevStripe(n int) (*stripesim.Server, error) {
	sim, err := stripesim.Start("127.0.0.1:0", stripesim.Config{APIKeys: []string{devStripeKey}})
	if err != nil {
		return nil, fmt.Errorf("stripe simulator: %w", err)
	}
	sim.Seed(stripesim.SeedSpec{Customers: max(1, n/10), PaymentMethods: n, LinkEvery: 50, Seed: 1})
	return sim, nil
}

// devServe migrates, provisions tenant `dev` with a fresh all-scope key,
// prints how to call the vault, and serves.
func devServe(ctx context.Context, raw *rawConfig, withSim bool, out io.Writer) error {
	cfg, err := raw.parse(true)
	if err != nil {
		return err
	}
	if err := migrate(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = devMetricsListen
	}
	log := newLogger(cfg.LogLevel)
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	tenant, secret, err := devKey(ctx, a.svc)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	printWelcome(out, baseURL(ln.Addr()), secret)
	fmt.Fprintf(out, "Prometheus metrics: http://%s/metrics\n\n", cfg.MetricsListen)
	fmt.Fprintf(out, "Operator commands (keys, tenant, apikey, import) in another shell:\n\nexport VAULT_DATABASE_URL='%s' VAULT_KEK_URI='%s' TENANT=%s\n\n",
		cfg.DatabaseURL, cfg.KEKURI, tenant)
	if withSim {
		fmt.Fprintf(out, "A simulated Stripe account runs at %s. Sync all its cards:\n\ncardvault import stripe --tenant $TENANT --api-key %s --wait\n\n",
			cfg.Import.StripeAPIBase, devStripeKey)
	}
	return serve(ctx, ln, a.svc, cfg, log, a.tel)
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

// devKey returns tenant `dev`, creating it on first run, and a fresh
// all-scope API key of it.
func devKey(ctx context.Context, svc *postgres.Service) (uuid.UUID, string, error) {
	t, err := svc.TenantByName(ctx, "dev")
	if vault.ErrorKind(err) == vault.KindNotFound {
		t, err = svc.CreateTenant(ctx, "dev")
	}
	if err != nil {
		return uuid.Nil, "", err
	}
	secret, _, err := svc.CreateAPIKey(ctx, t.ID, vault.AllScopes, "cardvault dev")
	return t.ID, secret, err
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
