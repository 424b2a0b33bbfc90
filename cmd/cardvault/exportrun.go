package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/vault"

	"github.com/cardvault/cardvault/exporter"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault/postgres"
)

// exportSettings say how a serving process works export jobs.
type exportSettings struct {
	// LeaseTTL is how long an item a process took stays its own without a
	// heartbeat: how soon another replica resumes the items of one that died.
	LeaseTTL time.Duration
}

// rawExport holds the unparsed export settings.
type rawExport struct{ leaseTTL string }

// bind binds the export flags, each defaulting to its env variable.
func (r *rawExport) bind(fs *pflag.FlagSet) {
	fs.StringVar(&r.leaseTTL, "export-lease-ttl", envOr("VAULT_EXPORT_LEASE_TTL", "1m"), "how long a process's hold on an export item lasts without its heartbeat: how soon another replica resumes a dead one's (env VAULT_EXPORT_LEASE_TTL)")
}

// parse validates the export settings.
func (r *rawExport) parse() (exportSettings, []error) {
	var s exportSettings
	var err error
	if r.leaseTTL == "" {
		r.leaseTTL = "1m"
	}
	if s.LeaseTTL, err = time.ParseDuration(r.leaseTTL); err != nil || s.LeaseTTL < time.Second || s.LeaseTTL > time.Hour {
		return s, []error{fmt.Errorf("VAULT_EXPORT_LEASE_TTL %q must be a duration between 1s and 1h, e.g. 1m", r.leaseTTL)}
	}
	return s, nil
}

// newExporter returns the export worker of a serving process (recording
// its attempts on m, which may be nil): it sends the
// items of running export jobs through svc's forward path.
func newExporter(svc *postgres.Service, s exportSettings, log *slog.Logger, m *metrics.Exports) (*exporter.Runner, error) {
	return exporter.New(exporter.Config{Service: svc, Owner: workerName(), LeaseTTL: s.LeaseTTL, Logger: log, Metrics: m})
}

func newExportRunCmd() *cobra.Command {
	var raw rawConfig
	var tenant, createdAfter, apiKey, mapping string
	var in vault.CreateExportInput
	var wait bool
	cmd := &cobra.Command{
		Use:   "run --tenant ID --destination ID [--business-key-prefix P] [--created-after T] [--wait] [--mapping FILE]",
		Short: "Start a job sending a tenant's cards (never a CVC) through a forwarding destination into another vault (run by `cardvault serve`); one token.export audit row per card, before it is sent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			if in.Filter.CreatedAfter, err = parseCreatedAfter(createdAfter); err != nil {
				return err
			}
			if apiKey != "" {
				in.Headers = append(in.Headers, vault.ForwardHeader{Name: "X-API-Key", Value: apiKey})
			}
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				if err := requireTenant(ctx, a.svc, tenantID); err != nil {
					return err
				}
				job, err := a.svc.CreateExport(ctx, a.cfg.actor(tenantID), in)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), job.ID)
				if !wait {
					return nil
				}
				werr := watchExport(ctx, a.svc, job.TenantID, job.ID, cmd.ErrOrStderr())
				if mapping != "" {
					if err := writeExportMapping(ctx, a.svc, tenantID, job.ID, mapping); err != nil {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "mapping written to %s\n", mapping)
				}
				return werr
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&in.DestinationID, "destination", "", "the forwarding destination (fwddst_…) the cards go to, in the own-vault shape")
	cmd.Flags().StringVar(&in.URL, "url", "", "the address to send to, when the destination is a prefix")
	cmd.Flags().StringVar(&in.Filter.BusinessKeyPrefix, "business-key-prefix", "", "export only tokens whose business key starts with this")
	cmd.Flags().StringVar(&createdAfter, "created-after", "", "export only tokens created after this RFC 3339 time")
	cmd.Flags().StringVar(&apiKey, "api-key", os.Getenv("EXPORT_API_KEY"), "the other vault's API key, sent as X-API-Key (env EXPORT_API_KEY keeps it out of shell history)")
	hideDefault(cmd.Flags(), "api-key")
	cmd.Flags().Float64Var(&in.RateLimit, "rate", 0, "sends per second of the job in each serving process (default 20)")
	cmd.Flags().BoolVar(&wait, "wait", false, "show progress until the job ends; exit 1 unless it finished")
	cmd.Flags().StringVar(&mapping, "mapping", "", "with --wait, write the mapping (token_id,business_key,remote_id,status) to this CSV file once the job ends")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("destination")
	return cmd
}

// watchExport shows the job's progress until it ends. It returns an error
// unless the job finished.
func watchExport(ctx context.Context, svc *postgres.Service, tenantID, id uuid.UUID, out io.Writer) error {
	p := newProgress(out, "cards")
	for {
		j, err := svc.GetExport(ctx, vault.Operator(tenantID), id)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%-9s ok %d failed %d", j.Status, j.Successes, j.Failures)
		if j.Ended() {
			p.finish(desc, j.Total-j.Pending(), j.Total)
			return exportEnded(j, out)
		}
		p.update(desc, j.Total-j.Pending(), j.Total)
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// exportEnded prints the job's outcome.
func exportEnded(j vault.ExportJob, out io.Writer) error {
	fmt.Fprintf(out, "export %s %s: %d of %d exported, %d failed\n", j.ID, j.Status, j.Successes, j.Total, j.Failures)
	switch j.Status {
	case vault.ExportFinished:
		if j.Failures > 0 {
			fmt.Fprintf(out, "the failed tokens and why: GET /tokens/exports/%s/items?status=failed\n", j.ID)
		}
		return nil
	case vault.ExportFailed:
		return actionf(nil, "export failed: %s; fix that, then start a new job", j.FailureReason)
	}
	return actionf(nil, "export %s %s; start a new job with `cardvault export run --tenant %s --destination %s --wait`", j.ID, j.Status, j.TenantID, j.DestinationID)
}

// writeExportMapping writes the job's ledger as CSV to path (which must not
// exist): token_id, business_key, remote_id, status, last_error. It
// returns an error when the file exists or a write or read fails.
func writeExportMapping(ctx context.Context, svc *postgres.Service, tenantID, id uuid.UUID, path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create the mapping file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := csv.NewWriter(f)
	if err := w.Write(vault.ExportMappingColumns); err != nil {
		return err
	}
	if err := svc.ExportMapping(ctx, vault.Operator(tenantID), id, func(it vault.ExportItem) error { return w.Write(it.MappingRecord()) }); err != nil {
		return err
	}
	w.Flush()
	return w.Error()
}
