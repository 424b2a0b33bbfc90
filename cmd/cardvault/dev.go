package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

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

// Files `cardvault dev` keeps in its directory besides PostgreSQL's, so
// that a restart prints the same URL, KEK and API key as the last run.
const (
	devPortFile   = "postgres-port" // the private server's TCP port
	devKEKFile    = "kek.json"      // the dev root KEK, made on first run
	devKEKURIFile = "kek-uri"       // the root KEK of the last run that opened the vault
	devKeyFile    = "api-key"       // the secret of the dev API key
)

// devKeyDescription marks the API keys `cardvault dev` makes.
const devKeyDescription = "cardvault dev"

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
		Long: "Runs the vault on 127.0.0.1:8080 with a private PostgreSQL, a local root KEK and tenant `dev` holding\n" +
			"one API key with every scope, all kept under --dir so that a restart prints the same database URL,\n" +
			"KEK and key. VAULT_DATABASE_URL and VAULT_KEK_URI (or the flags) replace the private server and the\n" +
			"dev KEK; a KEK given once is remembered for the next runs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if simCards < 0 || simCards > 1_000_000 {
				return fmt.Errorf("--stripe-simulator %d must be between 0 and 1000000 cards", simCards)
			}
			return runDev(cmd.Context(), &raw, dir, simCards, cmd.OutOrStdout())
		},
	}
	raw.bindServing(cmd.Flags(), defaultDevListen)
	raw.bindOperator(cmd.Flags(), operatorDefault)
	if os.Getenv("VAULT_EGRESS_ALLOW_LOOPBACK") == "" { // dev's webhook receivers are on this machine
		raw.egressAllowLoopback = "true"
		cmd.Flags().Lookup("egress-allow-loopback").DefValue = "true"
	}
	cmd.Flags().Lookup("listen").Usage = "listen address; loopback only unless you name another host, e.g. 0.0.0.0:8080 (env VAULT_LISTEN)"
	cmd.Flags().StringVar(&dir, "dir", ".cardvault-dev", "where the private PostgreSQL, the dev KEK and the dev API key live")
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
	if raw.databaseURL == "" || isOwnPostgres(dir, raw.databaseURL) {
		srv, err := startDevPostgres(ctx, dir, out)
		if err != nil {
			return err
		}
		defer srv.Stop() //nolint:errcheck // best effort on the way out
		raw.databaseURL = srv.URL(devDatabase)
	}
	if raw.kekURI == "" {
		if raw.kekURI, err = devKEK(dir, out); err != nil {
			return err
		}
	}
	raw.egressAllowLoopback = "true" // forwards to a local echo destination or a second local vault
	if simCards > 0 {
		sim, err := startDevStripe(simCards)
		if err != nil {
			return err
		}
		defer sim.Close() //nolint:errcheck // best effort on the way out
		raw.imp.stripeAPIBase = sim.URL()
	}
	return devServe(ctx, raw, dir, simCards > 0, out)
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

// devServe migrates, provisions tenant `dev` and its one all-scope key,
// prints how to call the vault, and serves.
func devServe(ctx context.Context, raw *rawConfig, dir string, withSim bool, out io.Writer) error {
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
	if err := writeDevFile(dir, devKEKURIFile, cfg.KEKURI); err != nil {
		return err
	}
	tenant, secret, err := devTenantKey(ctx, a.svc, dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return actionf(err, "cannot listen on %s (%v): is another `cardvault dev` running? Pick another address: `cardvault dev --listen 127.0.0.1:8081`",
			cfg.Listen, err)
	}
	printWelcome(out, baseURL(ln.Addr()), secret)
	fmt.Fprintf(out, "Prometheus metrics: http://%s/metrics\n\n", cfg.MetricsListen)
	printOperatorSetup(out, cfg, tenant, cliAlias())
	if withSim {
		fmt.Fprintf(out, "A simulated Stripe account runs at %s. Sync all its cards:\n\ncardvault import stripe --tenant $TENANT --api-key %s --wait\n\n",
			cfg.Import.StripeAPIBase, devStripeKey)
	}
	return serve(ctx, ln, a.svc, cfg, log, a.tel)
}

// startDevPostgres starts (or restarts) the private server under dir on
// the port it had last time, so the printed VAULT_DATABASE_URL stays valid;
// only when that port is taken does it pick a new one, and it says so. It
// makes sure the dev database exists.
func startDevPostgres(ctx context.Context, dir string, out io.Writer) (*pglocal.Server, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	port := readDevPort(dir)
	srv, err := pglocal.Start(ctx, dir, pglocal.Options{Log: logf, Port: port})
	if port != 0 && errors.Is(err, pglocal.ErrPortTaken) {
		srv, err = pglocal.Start(ctx, dir, pglocal.Options{Log: logf})
		if err == nil {
			fmt.Fprintf(out, "port %d of the private PostgreSQL is taken by another program; it listens on %d now, "+
				"so re-run the export line printed below in your other shells\n\n", port, srv.Port)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("private PostgreSQL: %w", err)
	}
	if err := writeDevFile(dir, devPortFile, strconv.Itoa(srv.Port)); err != nil {
		srv.Stop() //nolint:errcheck
		return nil, err
	}
	if err := ensureDatabase(ctx, srv.URL("postgres"), devDatabase); err != nil {
		srv.Stop() //nolint:errcheck
		return nil, err
	}
	return srv, nil
}

// readDevPort returns the port remembered under dir, or 0 (any free port)
// when there is none.
func readDevPort(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, devPortFile))
	if err != nil {
		return 0
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || port <= 0 || port > 65535 {
		return 0
	}
	return port
}

// isOwnPostgres reports whether url names dev's private server under dir,
// as the export line dev printed does: pasted into the shell that restarts
// dev, it must not stop dev from starting that server.
func isOwnPostgres(dir, url string) bool {
	port := readDevPort(dir)
	u, err := neturl.Parse(url)
	return err == nil && port != 0 && u.Host == net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) && u.Path == "/"+devDatabase
}

// writeDevFile writes value to dir/name, readable by its owner only.
func writeDevFile(dir, name, value string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(value+"\n"), 0o600)
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

// devKEK returns the root KEK of a run given none: the one the last run
// opened the vault with (after `keys rotate-root` that is the new one, once
// dev was started on it), else the dev KEK file under dir, created once.
func devKEK(dir string, out io.Writer) (string, error) {
	if b, err := os.ReadFile(filepath.Join(dir, devKEKURIFile)); err == nil {
		uri := strings.TrimSpace(string(b))
		if uri != "local://"+filepath.Join(dir, devKEKFile) {
			fmt.Fprintf(out, "root KEK: %s, which the last run used (VAULT_KEK_URI or --kek-uri picks another)\n\n", crypto.RedactKEKURI(uri))
		}
		return uri, nil
	}
	path := filepath.Join(dir, devKEKFile)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		if err := crypto.CreateLocalKEK(path); err != nil {
			return "", err
		}
	}
	return "local://" + path, nil
}

// devKey returns the live tenant `dev`, creating it when there is none,
// and a fresh all-scope API key of it (the benchmark's fresh database).
func devKey(ctx context.Context, svc *postgres.Service) (uuid.UUID, string, error) {
	tenant, err := devTenant(ctx, svc)
	if err != nil {
		return uuid.Nil, "", err
	}
	secret, _, err := svc.IssueAPIKey(ctx, devKeyInput(tenant))
	return tenant, secret, err
}

// devOperator is the operator that dev's own audit rows name: dev@HOST.
func devOperator() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "dev@" + host
}

// devKeyInput asks for dev's all-scope API key of tenant, made by
// devOperator.
func devKeyInput(tenant uuid.UUID) vault.NewAPIKey {
	return vault.NewAPIKey{TenantID: tenant, Scopes: vault.AllScopes, Description: devKeyDescription, Operator: devOperator()}
}

// devTenantKey returns the live tenant `dev` (creating it on first run, or
// after it was destroyed) and its one dev API key: the key kept under dir
// while it still works, else a fresh one. Other keys dev made are revoked,
// so restarts never leave several live all-scope keys.
func devTenantKey(ctx context.Context, svc *postgres.Service, dir string) (uuid.UUID, string, error) {
	tenant, err := devTenant(ctx, svc)
	if err != nil {
		return uuid.Nil, "", err
	}
	secret, keyID := reusableDevKey(ctx, svc, dir, tenant)
	if secret == "" {
		var k vault.APIKey
		if secret, k, err = svc.IssueAPIKey(ctx, devKeyInput(tenant)); err != nil {
			return uuid.Nil, "", err
		}
		keyID = k.ID
		if err := writeDevFile(dir, devKeyFile, secret); err != nil {
			return uuid.Nil, "", err
		}
	}
	return tenant, secret, revokeOtherDevKeys(ctx, svc, tenant, keyID)
}

// devTenant returns the id of the live tenant named dev, creating one when
// there is none.
func devTenant(ctx context.Context, svc *postgres.Service) (uuid.UUID, error) {
	ids, err := svc.TenantIDs(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	for _, id := range ids {
		t, err := svc.GetTenant(ctx, id)
		if err != nil {
			return uuid.Nil, err
		}
		if t.Name == "dev" {
			return id, nil
		}
	}
	t, err := svc.CreateTenantAs(ctx, devOperator(), "dev")
	return t.ID, err
}

// reusableDevKey returns the secret kept under dir and its key id when it
// still authenticates as tenant with every scope, and "" otherwise.
func reusableDevKey(ctx context.Context, svc *postgres.Service, dir string, tenant uuid.UUID) (string, uuid.UUID) {
	b, err := os.ReadFile(filepath.Join(dir, devKeyFile))
	if err != nil {
		return "", uuid.Nil
	}
	secret := strings.TrimSpace(string(b))
	actor, err := svc.Authenticate(ctx, secret, "cardvault-dev-start", "127.0.0.1")
	if err != nil || actor.TenantID != tenant || !hasEveryScope(actor.Scopes) {
		return "", uuid.Nil
	}
	return secret, actor.APIKeyID
}

// hasEveryScope reports whether scopes holds every scope there is.
func hasEveryScope(scopes []vault.Scope) bool {
	for _, s := range vault.AllScopes {
		if !slices.Contains(scopes, s) {
			return false
		}
	}
	return true
}

// revokeOtherDevKeys revokes the tenant's live keys made by dev, except
// keep; keys made with `cardvault apikey create` stay.
func revokeOtherDevKeys(ctx context.Context, svc *postgres.Service, tenant, keep uuid.UUID) error {
	keys, err := svc.ListAPIKeys(ctx, tenant)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID == keep || k.RevokedAt != nil || k.Description != devKeyDescription {
			continue
		}
		if _, err := svc.RevokeAPIKeyAs(ctx, devOperator(), k.ID); err != nil && vault.ErrorKind(err) != vault.KindNotFound {
			return err
		}
	}
	return nil
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

API key (tenant "dev", every scope; the same after a restart): %[2]s

Operator console: %[1]s/console (sign in with that key)

Replay what Stripe forwards to /cde-import:

curl -sS %[1]s/cde-import \
  -H 'User-Agent: Stripe' -H 'Content-Type: application/json' \
  -H 'X-API-Key: %[2]s' \
  -d '{"metadata":{"business_key":"pm_1DevExample"},"card":{"number":"4242424242424242","exp_month":"04","exp_year":"2033","cvc":"123","name":"John Doe"}}'

`, base, secret)
}

// printOperatorSetup prints the lines that set up another shell for the
// operator commands: the settings (the operator named in their audit rows
// too), and alias when `cardvault` on the PATH is not this binary.
func printOperatorSetup(out io.Writer, cfg config, tenant uuid.UUID, alias string) {
	fmt.Fprintf(out, "Operator commands (keys, tenant, apikey, import) in another shell: paste\n\nexport VAULT_DATABASE_URL=%s VAULT_KEK_URI=%s VAULT_OPERATOR=%s TENANT=%s\n",
		shellQuote(cfg.DatabaseURL), shellQuote(cfg.KEKURI), shellQuote(cfg.Operator), tenant)
	if alias != "" {
		fmt.Fprintln(out, alias)
	}
	fmt.Fprint(out, "cardvault keys status --tenant $TENANT\n\n")
}

// cliAlias returns the shell alias that makes `cardvault` run this binary,
// or "" when the `cardvault` on the PATH already is this binary.
func cliAlias() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	if onPath, err := exec.LookPath("cardvault"); err == nil && sameFile(onPath, self) {
		return ""
	}
	return "alias cardvault=" + shellQuote(self) + "   # `make install` puts cardvault on your PATH instead"
}

// sameFile reports whether paths a and b name the same file.
func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
