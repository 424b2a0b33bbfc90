package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// benchOptions configure `cardvault bench`.
type benchOptions struct {
	// DatabaseURL names a server to create the bench database on (a
	// postgres:// URL of a role that may create databases); "" starts a
	// private server in a temporary directory.
	DatabaseURL string
	// Concurrency is how many requests are in flight in each phase.
	Concurrency int
	// Duration is how long each timed phase is measured.
	Duration time.Duration
	// Warmup is how long each timed phase runs before it is measured.
	Warmup time.Duration
	// Out is the folder bench.json, bench.csv, vault.log (and profiles) go to.
	Out string
	// ImportCards is how many payment methods the import phase imports.
	ImportCards int
	// ImportConcurrency is the vault's VAULT_IMPORT_CONCURRENCY; 0 means
	// Concurrency (at most 256), so that the import has as many requests in
	// flight as the tokenize phase it is compared with.
	ImportConcurrency int
	// Profile captures CPU profiles of the vault during the HTTP phases,
	// through its --debug-listen pprof listener, into Out.
	Profile bool
	// childCommand returns the command that runs `cardvault serve`; nil
	// means this executable. Tests run the test binary instead.
	childCommand func() (*exec.Cmd, error)
	// skipSettle skips waiting for the vault and PostgreSQL to go idle
	// after each phase (tests).
	skipSettle bool
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench [--database-url URL] [--concurrency 32] [--duration 10s] [--out DIR] [--import-cards N]",
		Short: "Measure tokenize, read, detokenize and import against PostgreSQL's own durable insert and point select",
		Long: `bench creates a fresh database (on a private PostgreSQL it starts, or on the
server --database-url names), runs the vault as a child process on loopback
and measures, each phase for --duration (after --warmup) at --concurrency:

  1. baseline-insert  plain pgx INSERT of a token-shaped row, one durable commit each
  2. tokenize         POST /cde-import with Stripe's forwarding body
  3. baseline-select  plain pgx point SELECT by primary key
  4. baseline-http    GET /healthz: the vault's HTTP floor, no database
  5. read             GET /tokens/{id}
  6. detokenize       POST /tokens/{id}/detokenize
  7. import           an import job of --import-cards payment methods from a Stripe simulator

It prints a table with the ratios to the baselines and PASS/FAIL per target,
writes bench.json and bench.csv to --out, and exits non-zero if any request
failed. The database (and a private server) are removed afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ImportConcurrency == 0 {
				o.ImportConcurrency = min(o.Concurrency, 256)
			}
			if err := o.validate(); err != nil {
				return err
			}
			return runBench(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DatabaseURL, "database-url", "", "a postgres:// URL of a server to create the bench database on; default: a private server in a temporary directory")
	f.IntVar(&o.Concurrency, "concurrency", 32, "requests in flight in each phase")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each phase is measured")
	f.DurationVar(&o.Warmup, "warmup", time.Second, "how long each timed phase runs before it is measured (its errors still count)")
	f.StringVar(&o.Out, "out", "cardvault-bench", "folder for bench.json, bench.csv and vault.log")
	f.IntVar(&o.ImportCards, "import-cards", 2000, "payment methods imported in the import phase")
	f.IntVar(&o.ImportConcurrency, "import-concurrency", 0, "the vault's VAULT_IMPORT_CONCURRENCY during the import phase; default: --concurrency (at most 256)")
	f.BoolVar(&o.Profile, "profile", false, "save CPU profiles of the vault for each HTTP phase (and a heap profile) to --out")
	return cmd
}

// validate returns every out-of-range option at once.
func (o benchOptions) validate() error {
	var errs []error
	if o.Concurrency < 1 || o.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("--concurrency %d must be between 1 and 1024", o.Concurrency))
	}
	if o.Duration < 100*time.Millisecond || o.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("--duration %s must be between 100ms and 1h", o.Duration))
	}
	if o.Warmup < 0 || o.Warmup > time.Hour {
		errs = append(errs, fmt.Errorf("--warmup %s must be between 0 and 1h", o.Warmup))
	}
	if o.ImportCards < 1 || o.ImportCards > 1_000_000 {
		errs = append(errs, fmt.Errorf("--import-cards %d must be between 1 and 1000000", o.ImportCards))
	}
	if o.ImportConcurrency < 1 || o.ImportConcurrency > 256 {
		errs = append(errs, fmt.Errorf("--import-concurrency %d must be between 1 and 256", o.ImportConcurrency))
	}
	if o.Out == "" {
		errs = append(errs, errors.New("--out must name a folder"))
	}
	return errors.Join(errs...)
}

// errBenchRequests is returned when the bench ran but some requests failed.
var errBenchRequests = errors.New("bench: some requests failed (see the errors column and vault.log)")

// runBench sets up the database, the vault child and the Stripe simulator,
// runs the seven phases, reports, and tears everything down. It returns an
// error when setup fails or any request failed.
func runBench(ctx context.Context, o benchOptions, out, progress io.Writer) error {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "cardvault-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(progress, "bench: preparing a fresh database, a vault child process and a Stripe simulator …")
	env, err := setupBench(ctx, o, tmp)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return err
	}
	rep, err := runPhases(ctx, env, o, progress)
	if err != nil {
		return err
	}
	printReport(out, rep)
	if err := writeReport(o.Out, rep); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nwrote %s and %s\n", filepath.Join(o.Out, "bench.json"), filepath.Join(o.Out, "bench.csv"))
	if rep.totalErrors() > 0 {
		return errBenchRequests
	}
	return nil
}
