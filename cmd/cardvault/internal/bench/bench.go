// Package bench is `cardvault bench`: it measures tokenize, read,
// detokenize, forward and import through the real vault, run as a child
// process, against PostgreSQL's own durable insert and point select on the
// same machine, and reports the ratios and the targets.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/uuid"
)

// Options configure a bench run.
type Options struct {
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
	// FileImportCards is how many rows the file import phase's card file
	// has (default 20,000).
	FileImportCards int
	// ImportKey makes the tenant's OpenPGP import key in the database at
	// dbURL (root KEK at kekURI) and returns its armored public key, which
	// the file import phase's card file is encrypted to; nil leaves the
	// phase without a file (it then fails).
	ImportKey func(ctx context.Context, dbURL, kekURI string, tenantID uuid.UUID) (string, error)
	// Profile captures CPU profiles of the vault during the HTTP phases,
	// through its --debug-listen pprof listener, into Out.
	Profile bool
	// Report receives the result table; Progress the progress lines.
	Report, Progress io.Writer
	// Provision migrates the database at dbURL and makes the tenant and the
	// every-scope API key the vault serves, with the root KEK at kekURI.
	Provision func(ctx context.Context, dbURL, kekURI string) (tenantID uuid.UUID, apiKey string, err error)
	// StopGrace is how long the vault gets to exit after SIGTERM.
	StopGrace time.Duration
	// ChildCommand returns the command that runs `cardvault serve`; nil
	// means this executable. Tests run the test binary instead.
	ChildCommand func() (*exec.Cmd, error)
	// Replicas is how many vault processes serve the run against the one
	// database (1 when 0); each worker sends to one of them, so the load is
	// split evenly.
	Replicas int
	// Preload is how many tokens (and five times as many audit rows) the
	// database holds before the phases run; 0 runs on an empty database.
	Preload int
	// Seed stores n tokens of tenantID (the i-th holding card(i)) and 5 × n
	// audit rows in the database at dbURL with the root KEK at kekURI,
	// through the vault's own sealing code; needed when Preload > 0.
	Seed func(ctx context.Context, dbURL, kekURI string, tenantID uuid.UUID, n int, card func(i int) (businessKey, number string)) error
	// Phases names the phases to run (every phase when empty); the phases
	// they draw from are added (tokenize for replays, updates, reads,
	// reveals and forwards; baseline-insert for baseline-select). Targets
	// on a phase that did not run are reported as skipped.
	Phases []string
	// SkipSettle skips waiting for the vault and PostgreSQL to go idle
	// after each phase (tests).
	SkipSettle bool
}

// withDefaults fills ImportConcurrency and Replicas.
func (o Options) withDefaults() Options {
	o.Replicas = max(o.Replicas, 1)
	if o.ImportConcurrency == 0 {
		o.ImportConcurrency = min(o.Concurrency, 256)
	}
	if o.FileImportCards == 0 {
		o.FileImportCards = 20_000
	}
	return o
}

// Validate returns every out-of-range option at once, named by its flag.
func (o Options) Validate() error {
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
	if o.FileImportCards < 0 || o.FileImportCards > 1_000_000 { // 0: the default
		errs = append(errs, fmt.Errorf("--file-import-cards %d must be between 1 and 1000000", o.FileImportCards))
	}
	if o.ImportConcurrency < 1 || o.ImportConcurrency > 256 {
		errs = append(errs, fmt.Errorf("--import-concurrency %d must be between 1 and 256", o.ImportConcurrency))
	}
	if o.Replicas < 1 || o.Replicas > 16 {
		errs = append(errs, fmt.Errorf("--replicas %d must be between 1 and 16", o.Replicas))
	}
	if o.Preload < 0 || o.Preload > 100_000_000 {
		errs = append(errs, fmt.Errorf("--preload %d must be between 0 and 100000000", o.Preload))
	}
	if _, err := selectPhases(o.Phases); err != nil {
		errs = append(errs, err)
	}
	if o.Out == "" {
		errs = append(errs, errors.New("--out must name a folder"))
	}
	return errors.Join(errs...)
}

// ErrRequests is returned when the bench ran but some requests failed.
var ErrRequests = errors.New("bench: some requests failed (see the errors column and vault.log)")

// Run sets up the database, the vault child, the Stripe simulator and the
// forward phase's destination, runs the phases (every one, or those --phases names), reports, and tears
// everything down. It returns the
// options' validation error, an error when setup fails, or ErrRequests when
// any request failed.
func Run(ctx context.Context, o Options) error {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "cardvault-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(o.Progress, "bench: preparing a fresh database, a vault child process and a Stripe simulator …")
	env, err := setup(ctx, o, tmp)
	if env != nil {
		defer env.close()
	}
	if err != nil {
		return err
	}
	rep, err := runPhases(ctx, env, o)
	if err != nil {
		return err
	}
	printReport(o.Report, rep)
	if err := writeReport(o.Out, rep); err != nil {
		return err
	}
	fmt.Fprintf(o.Report, "\nwrote %s and %s\n", filepath.Join(o.Out, "bench.json"), filepath.Join(o.Out, "bench.csv"))
	if rep.totalErrors() > 0 {
		return ErrRequests
	}
	return nil
}
