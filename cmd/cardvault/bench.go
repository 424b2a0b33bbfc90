package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/bench"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// newBenchCmd parses the bench's flags and runs bench.Run, provisioning
// the database with the code `cardvault dev` uses.
func newBenchCmd() *cobra.Command {
	var o bench.Options
	cmd := &cobra.Command{
		Use:   "bench [--database-url URL] [--concurrency 32] [--duration 10s] [--out DIR] [--phases a,b] [--import-cards N]",
		Short: "Measure tokenize, read, detokenize, forward and import against PostgreSQL's own durable insert and point select",
		Long: `bench creates a fresh database (on a private PostgreSQL it starts, or on the
server --database-url names), runs the vault as a child process on loopback
and measures, each phase for --duration (after --warmup) at --concurrency:

  1. baseline-insert  plain pgx INSERT of a token-shaped row, one durable commit each
  2. tokenize         POST /cde-import with Stripe's forwarding body
  3. tokenize-replay  the same POST /cde-import again (same business key, same card)
  4. tokenize-update  POST /cde-import of a new card under an existing business key
  5. baseline-select  plain pgx point SELECT by primary key
  6. baseline-audit   PostgreSQL alone: a batch of reads' tokens found and their audit rows
                      written, one durable commit per batch (the database's floor for a read)
  7. baseline-http    GET /healthz: the vault's HTTP floor, no database
  8. baseline-http-audit
                      GET /tokens/{id} from a bare HTTP server in the bench process whose
                      only work is baseline-audit's statement, batched as the vault batches
                      reads: the floor of any read audited durably before it answers
  9. read             GET /tokens/{id}
 10. detokenize       POST /tokens/{id}/detokenize
 11. forward          POST /v1/forwarding/requests to an instant loopback HTTPS destination;
                      also the vault's own overhead (latency minus destination_duration)
 12. import           an import job of --import-cards payment methods from a Stripe simulator
 13. file-import      an encrypted Stripe export of --file-import-cards public test numbers
                      uploaded to POST /tokens/imports, end to end, rows/s

--phases runs only the phases named (and those they draw from).

It prints a table with the ratios to the baselines and PASS/FAIL per target,
writes bench.json and bench.csv to --out, and exits non-zero if any request
failed. The database (and a private server) are removed afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Report, o.Progress = cmd.OutOrStdout(), cmd.ErrOrStderr()
			o.Provision, o.StopGrace, o.Seed = provisionBench, shutdownGrace, seedBench
			o.ImportKey = benchImportKey
			return bench.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DatabaseURL, "database-url", "", "a postgres:// URL of a server to create the bench database on; default: a private server in a temporary directory")
	f.IntVar(&o.Concurrency, "concurrency", 32, "requests in flight in each phase")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each phase is measured")
	f.DurationVar(&o.Warmup, "warmup", time.Second, "how long each timed phase runs before it is measured (its errors still count)")
	f.StringVar(&o.Out, "out", "cardvault-bench", "folder for bench.json, bench.csv and vault.log")
	f.IntVar(&o.ImportCards, "import-cards", 2000, "payment methods imported in the import phase")
	f.IntVar(&o.FileImportCards, "file-import-cards", 20_000, "rows of the encrypted card file imported in the file-import phase")
	f.IntVar(&o.ImportConcurrency, "import-concurrency", 0, "the vault's VAULT_IMPORT_CONCURRENCY during the import phase; default: --concurrency (at most 256)")
	f.IntVar(&o.Replicas, "replicas", 1, "vault processes serving the run against the one database, the load split evenly across them")
	f.IntVar(&o.Preload, "preload", 0, "tokens (sealed by the vault's code, written with COPY) and 5 × as many audit rows the database holds before the phases run")
	f.StringSliceVar(&o.Phases, "phases", nil, "run only these phases (comma-separated; the phases they draw from are added, e.g. tokenize for read); default: all")
	f.BoolVar(&o.Profile, "profile", false, "save CPU profiles of the vault for each phase it serves (the imports over --duration from their start) and a heap profile to --out")
	return cmd
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

// benchApp opens the vault the bench's child will serve (its database and
// root KEK), for setting up its tenant before the phases. It returns an
// error when the configuration or the database is refused.
func benchApp(ctx context.Context, dbURL, kekURI string) (*app, error) {
	var raw rawConfig
	raw.bindServer(pflag.NewFlagSet("bench", pflag.ContinueOnError))
	raw.databaseURL, raw.kekURI, raw.listen = dbURL, kekURI, "127.0.0.1:0"
	cfg, err := raw.parse(true)
	if err != nil {
		return nil, err
	}
	return openApp(ctx, cfg, slog.New(slog.DiscardHandler))
}

// seedBench stores n tokens of tenantID and 5 × n audit rows through the
// vault's own sealing code (`bench --preload`), and verifies the trail.
// The seeded tokens hold no CVC: they stand for a vault's history, and a
// CVC lives only until its first use or VAULT_CVC_TTL (1 h), so in a vault
// of millions of tokens nearly all have lost theirs; the tokens the phases
// make hold CVCs, and reveals and forwards destroy those.
func seedBench(ctx context.Context, dbURL, kekURI string, tenantID uuid.UUID, n int, cardOf func(i int) (string, string)) error {
	a, err := benchApp(ctx, dbURL, kekURI)
	if err != nil {
		return err
	}
	defer a.Close()
	err = a.svc.SeedTokens(ctx, tenantID, n, func(i int) vault.TokenizeInput {
		key, number := cardOf(i)
		return vault.TokenizeInput{BusinessKey: key, Card: card.CardInput{Number: number, ExpMonth: "04", ExpYear: "2033",
			Name: "John Doe"}}
	})
	if err != nil {
		return err
	}
	if err := a.svc.SeedAuditEvents(ctx, tenantID, 5*n); err != nil {
		return err
	}
	// Verified here, as a vault's first audit-prune pass would before its
	// first prune: otherwise the child verifies the whole seeded trail in
	// the background during the first phases (50,000,000 rows took minutes
	// of the vault's and PostgreSQL's CPU into tokenize's figures).
	r, err := a.svc.VerifyAuditResume(ctx, &tenantID)
	if err == nil && !r.OK {
		err = fmt.Errorf("bench: the seeded audit trail does not verify: %d breaks", len(r.Breaks))
	}
	return err
}

// benchImportKey makes the bench tenant's OpenPGP import key and returns
// its armored public half.
func benchImportKey(ctx context.Context, dbURL, kekURI string, tenant uuid.UUID) (string, error) {
	a, err := benchApp(ctx, dbURL, kekURI)
	if err != nil {
		return "", err
	}
	defer a.Close()
	k, err := a.svc.CreatePGPKey(ctx, vault.OperatorNamed(tenant, "bench"))
	return k.PublicKey, err
}
