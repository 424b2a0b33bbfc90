package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
)

// importSettings says how serve's import workers drive Stripe.
type importSettings struct {
	PublicURL     string // the vault's public base URL; Stripe forwards to PublicURL/cde-import
	StripeAPIBase string
	Rate          float64 // Stripe requests per second per job; negative: unthrottled
	Concurrency   int
	MaxAttempts   int
	// FileMaxBytes caps an encrypted card file uploaded or imported
	// (VAULT_IMPORT_FILE_MAX_BYTES).
	FileMaxBytes int64
	// FileLeaseTTL is how long a file import's lease lasts without renewal:
	// how soon another process resumes the job of one that died
	// (VAULT_FILE_IMPORT_LEASE_TTL).
	FileLeaseTTL time.Duration
}

// rawImport holds the unparsed import settings.
type rawImport struct {
	publicURL, stripeAPIBase, rate, concurrency, maxAttempts string
	fileMaxBytes, fileLeaseTTL                               string
}

// bind binds the import flags, each defaulting to its env variable.
func (r *rawImport) bind(fs *pflag.FlagSet) {
	fs.StringVar(&r.publicURL, "public-url", os.Getenv("VAULT_PUBLIC_URL"), "the vault's public base URL Stripe forwards to, https in production (env VAULT_PUBLIC_URL; default http://localhost:<port>)")
	hideDefault(fs, "public-url")
	fs.StringVar(&r.stripeAPIBase, "stripe-api-base", envOr("VAULT_STRIPE_API_BASE", importer.DefaultStripeAPIBase), "Stripe's API base URL (env VAULT_STRIPE_API_BASE)")
	fs.StringVar(&r.rate, "import-rate", envOr("VAULT_IMPORT_RATE", "20"), "Stripe requests per second per import job, across replicas; 0 for unthrottled (env VAULT_IMPORT_RATE)")
	fs.StringVar(&r.concurrency, "import-concurrency", envOr("VAULT_IMPORT_CONCURRENCY", "4"), "forwards in flight per process (env VAULT_IMPORT_CONCURRENCY)")
	r.bindFile(fs)
	fs.StringVar(&r.maxAttempts, "import-max-attempts", envOr("VAULT_IMPORT_MAX_ATTEMPTS", "5"), "forward attempts before a payment method is given up (env VAULT_IMPORT_MAX_ATTEMPTS)")
}

// parse validates the import settings.
func (r *rawImport) parse() (importSettings, []error) {
	var s importSettings
	var errs []error
	s.PublicURL = r.publicURL // "" means serve's own address (see serve)
	if u, err := url.Parse(s.PublicURL); s.PublicURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		errs = append(errs, fmt.Errorf("VAULT_PUBLIC_URL %q must be an absolute https:// URL", s.PublicURL))
	}
	s.StripeAPIBase = r.stripeAPIBase
	if u, err := url.Parse(s.StripeAPIBase); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("VAULT_STRIPE_API_BASE %q must be an absolute URL", s.StripeAPIBase))
	}
	var err error
	if s.Rate, err = strconv.ParseFloat(r.rate, 64); err != nil || s.Rate < 0 || s.Rate > 1000 {
		errs = append(errs, fmt.Errorf("VAULT_IMPORT_RATE %q must be a number of requests per second between 0 (unthrottled) and 1000", r.rate))
	} else if s.Rate == 0 {
		s.Rate = -1
	}
	if s.Concurrency, err = strconv.Atoi(r.concurrency); err != nil || s.Concurrency < 1 || s.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("VAULT_IMPORT_CONCURRENCY %q must be between 1 and 256", r.concurrency))
	}
	if s.MaxAttempts, err = strconv.Atoi(r.maxAttempts); err != nil || s.MaxAttempts < 1 || s.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("VAULT_IMPORT_MAX_ATTEMPTS %q must be between 1 and 100", r.maxAttempts))
	}
	errs = append(errs, r.parseFile(&s)...)
	return s, errs
}

// defaultFileLeaseTTL is how long a file import's lease lasts by default.
const defaultFileLeaseTTL = "1m"

// bindFile binds the file import flags (serve and `import file`), each
// defaulting to its env variable.
func (r *rawImport) bindFile(fs *pflag.FlagSet) {
	fs.StringVar(&r.fileMaxBytes, "import-file-max-bytes", envOr("VAULT_IMPORT_FILE_MAX_BYTES", strconv.Itoa(vault.DefaultMaxImportFileBytes)), "the largest encrypted card file an import takes, in bytes (env VAULT_IMPORT_FILE_MAX_BYTES)")
	fs.StringVar(&r.fileLeaseTTL, "file-import-lease-ttl", envOr("VAULT_FILE_IMPORT_LEASE_TTL", defaultFileLeaseTTL), "how long a process's hold on a file import lasts without renewal: how soon another process resumes a dead one's job (env VAULT_FILE_IMPORT_LEASE_TTL)")
}

// parseFile sets s's file import settings (the defaults for those not
// bound) and returns every problem with them.
func (r *rawImport) parseFile(s *importSettings) []error {
	var errs []error
	var err error
	maxBytes := orDefault(r.fileMaxBytes, strconv.Itoa(vault.DefaultMaxImportFileBytes))
	if s.FileMaxBytes, err = strconv.ParseInt(maxBytes, 10, 64); err != nil || s.FileMaxBytes < 1 || s.FileMaxBytes > 1<<40 {
		errs = append(errs, fmt.Errorf("VAULT_IMPORT_FILE_MAX_BYTES %q must be a number of bytes between 1 and 1 TiB", maxBytes))
	}
	ttl := orDefault(r.fileLeaseTTL, defaultFileLeaseTTL)
	if s.FileLeaseTTL, err = time.ParseDuration(ttl); err != nil || s.FileLeaseTTL < time.Second || s.FileLeaseTTL > time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_FILE_IMPORT_LEASE_TTL %q must be a duration between 1s and 1h, e.g. 1m", ttl))
	}
	return errs
}

// newImporter returns serve's import runner.
func newImporter(svc *postgres.Service, s importSettings, log *slog.Logger, m *metrics.Imports) (*importer.Runner, error) {
	return importer.New(importer.Config{
		Service: svc, Owner: workerName(), PublicURL: s.PublicURL, StripeAPIBase: s.StripeAPIBase,
		Rate: s.Rate, Concurrency: s.Concurrency, MaxAttempts: s.MaxAttempts, Logger: log, Metrics: m,
	})
}

func newImportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Copy a Stripe account's cards or an encrypted card file into the vault, and watch import jobs"}
	cmd.AddCommand(newImportStripeCmd(), newImportWatchCmd(), newImportFileCmd())
	return cmd
}

func newImportStripeCmd() *cobra.Command {
	var raw rawConfig
	var tenant, apiKey string
	var wait bool
	cmd := &cobra.Command{
		Use:   "stripe --tenant ID --api-key sk_… [--wait]",
		Short: "Start a job importing every card payment method of a Stripe account (run by `cardvault serve`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				if err := requireTenant(ctx, a.svc, tenantID); err != nil {
					return err
				}
				job, err := a.svc.CreateImport(ctx, a.cfg.actor(tenantID),
					vault.CreateImportInput{Provider: vault.ProviderStripe, StripeAPIKey: card.NewSecret(apiKey)})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), job.ID)
				if !wait {
					return nil
				}
				return watchImport(ctx, a.svc, job.ID, cmd.ErrOrStderr())
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&apiKey, "api-key", os.Getenv("STRIPE_API_KEY"), "the Stripe secret or restricted key (env STRIPE_API_KEY keeps it out of shell history)")
	hideDefault(cmd.Flags(), "api-key")
	cmd.Flags().BoolVar(&wait, "wait", false, "show progress until the job ends; exit 1 unless it finished")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func newImportWatchCmd() *cobra.Command {
	var raw rawConfig
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Show an import job's progress until it ends; exit 1 unless it finished",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := uuid.Parse(args[0])
			if err != nil {
				return actionf(nil, "%q is not an import job id; it is what `cardvault import stripe` printed (or GET /tokens/imports lists)", args[0])
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				return watchImport(cmd.Context(), a.svc, id, cmd.ErrOrStderr())
			})
		},
	}
	raw.bindVault(cmd.Flags())
	return cmd
}

// importHintAfter is how long a watch waits for a worker to pick the job
// up before it asks whether a `cardvault serve` is running.
const importHintAfter = 5 * time.Second

// watchImport shows the job's progress (counts, rate, time left) until it
// ends. It returns an error unless the job finished.
func watchImport(ctx context.Context, svc *postgres.Service, id uuid.UUID, out io.Writer) error {
	p := newProgress(out, "cards")
	hinted := false
	for start := time.Now(); ; {
		j, err := svc.FindImport(ctx, id)
		if err != nil {
			return ifNotFound(err, actionf(err, "no import job %s; the id is what `cardvault import stripe` printed (GET /tokens/imports lists them)", id))
		}
		desc := fmt.Sprintf("%-9s ok %d failed %d skipped %d", j.Status, j.Successes, j.Failures, j.Skipped)
		if j.Ended() {
			p.finish(desc, j.Total-j.Pending(), j.Total)
			return importEnded(j, out)
		}
		p.update(desc, j.Total-j.Pending(), j.Total)
		if !hinted && j.StartedAt == nil && time.Since(start) > importHintAfter {
			hinted = true
			p.note("no import worker has picked the job up yet: is a `cardvault serve` (or `cardvault dev`) running on this database?")
		}
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// importEnded prints the job's outcome.
func importEnded(j vault.ImportJob, out io.Writer) error {
	fmt.Fprintf(out, "import %s %s: %d of %d imported, %d failed, %d skipped\n",
		j.ID, j.Status, j.Successes, j.Total, j.Failures, j.Skipped)
	if j.Provider == vault.ProviderFile && j.Status != vault.ImportFinished {
		return fileImportEnded(j)
	}
	switch j.Status {
	case vault.ImportFinished:
		if j.Failures > 0 {
			fmt.Fprintf(out, "the failed payment methods (or rows): GET /tokens/imports/%s/items?status=failed\n", j.ID)
		}
		return nil
	case vault.ImportFailed:
		return actionf(nil, "import failed: %s; fix that, then start a new job: `cardvault import stripe --tenant %s --wait`", j.FailureReason, j.TenantID)
	}
	return actionf(nil, "import %s %s; start a new job with `cardvault import stripe --tenant %s --wait`", j.ID, j.Status, j.TenantID)
}

// fileImportEnded returns the error of a file import that did not finish.
func fileImportEnded(j vault.ImportJob) error {
	if j.Status == vault.ImportFailed {
		return actionf(nil, "import failed: %s; nothing of the file was imported: fix that (the file, the key it is encrypted to), then run `cardvault import file --tenant %s` again",
			j.FailureReason, j.TenantID)
	}
	return actionf(nil, "import %s %s; the rows imported before keep their tokens: run `cardvault import file --tenant %s` again to import the rest",
		j.ID, j.Status, j.TenantID)
}
