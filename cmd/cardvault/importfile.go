package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// fileImport is one `import file` run's settings.
type fileImport struct {
	tenant   uuid.UUID
	format   cardfile.Format
	path     string // the encrypted file
	mapping  string // where the mapping file goes
	wait     bool   // run and follow the job here until it ends
	operator string // the person running the import
	// maxBytes caps the encrypted file (VAULT_IMPORT_FILE_MAX_BYTES).
	maxBytes int64
	// leaseTTL is how long this process's hold on the job lasts without
	// renewal (VAULT_FILE_IMPORT_LEASE_TTL).
	leaseTTL time.Duration
}

func newImportFileCmd() *cobra.Command {
	var raw rawConfig
	var tenant, format, mapping string
	var wait bool
	cmd := &cobra.Command{
		Use:   "file --tenant ID --format stripe-json|stripe-csv|jsonl FILE.pgp",
		Short: "Import every card of an OpenPGP-encrypted card file (Stripe's PAN export) as a resumable job and write the mapping file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fi, err := parseFileImport(tenant, format, args[0], mapping)
			if err != nil {
				return err
			}
			fi.wait = wait
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				if err := requireTenant(ctx, a.svc, fi.tenant); err != nil {
					return err
				}
				fi.operator = a.cfg.Operator
				fi.leaseTTL, fi.maxBytes = a.cfg.Import.FileLeaseTTL, a.cfg.Import.FileMaxBytes
				return runFileImport(ctx, a.svc, fi, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	raw.bindFileImport(cmd.Flags())
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&format, "format", "", "the clear file's layout: stripe-json, stripe-csv or jsonl")
	cmd.Flags().BoolVar(&wait, "wait", true, "run the job here too (with any `cardvault serve`), show progress until it ends and write the mapping file; --wait=false only starts it")
	cmd.Flags().StringVar(&mapping, "mapping", "", "where to write the mapping file (default: FILE without .pgp/.gpg, plus .mapping.csv)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("format")
	return cmd
}

// parseFileImport validates the settings.
func parseFileImport(tenant, format, path, mapping string) (fileImport, error) {
	id, err := parseTenantID(tenant)
	if err != nil {
		return fileImport{}, err
	}
	f, err := cardfile.ParseFormat(format)
	if err != nil {
		return fileImport{}, err
	}
	if mapping == "" {
		base := path
		for _, ext := range []string{".pgp", ".gpg", ".asc"} {
			base = strings.TrimSuffix(base, ext)
		}
		mapping = base + ".mapping.csv"
	}
	return fileImport{tenant: id, format: f, path: path, mapping: mapping}, nil
}

// runFileImport stores fi's encrypted file as a file import job (the
// ciphertext only; any replica's worker may run it). With fi.wait it also
// runs the job in this process, shows its progress on errOut until it
// ends, then writes the mapping file, prints its path on out and the failed
// rows on errOut; without, it prints the job's id on out. It returns an
// error when the file cannot be read or stored (over fi.maxBytes: naming
// VAULT_IMPORT_FILE_MAX_BYTES, and no job is left), or the job did not
// finish (a damaged file, a key that does not open it); the reason never
// quotes card data.
func runFileImport(ctx context.Context, svc *postgres.Service, fi fileImport, out, errOut io.Writer) error {
	f, err := os.Open(fi.path)
	if err != nil {
		return fmt.Errorf("open the card file: %w", err)
	}
	defer f.Close()
	a := vault.OperatorNamed(fi.tenant, fi.operator)
	job, err := svc.CreateFileImport(ctx, a, vault.CreateFileImportInput{Format: string(fi.format), File: f, MaxBytes: fi.maxBytes})
	if ve := vault.AsError(err); err != nil && ve.Kind == vault.KindTooLarge {
		return actionf(err, "the card file is over the limit of %d bytes (VAULT_IMPORT_FILE_MAX_BYTES, --import-file-max-bytes); no import was started: raise the limit to import it", fi.maxBytes)
	}
	if err != nil {
		return err
	}
	if !fi.wait {
		fmt.Fprintln(out, job.ID)
		return nil
	}
	fmt.Fprintf(errOut, "import %s\n", job.ID)
	w, err := cardfile.NewWorker(cardfile.WorkerConfig{Queue: svc, Owner: workerName(), LeaseTTL: fi.leaseTTL, Poll: 250 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	workCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.RunJob(workCtx, job.ID) }()
	j, err := followFileImport(ctx, svc, job.ID, errOut)
	stop()
	<-done
	if err != nil {
		return err
	}
	if j.Status != vault.ImportFinished {
		return importEnded(j, errOut)
	}
	if err := writeMapping(ctx, svc, a, job.ID, fi.mapping, errOut); err != nil {
		return err
	}
	fmt.Fprintln(out, fi.mapping)
	return nil
}

// followFileImport shows the job's progress in rows, with rate and time
// left, until it ends, and returns it.
func followFileImport(ctx context.Context, svc *postgres.Service, id uuid.UUID, errOut io.Writer) (vault.ImportJob, error) {
	p := newProgress(errOut, "rows")
	for {
		j, err := svc.FindImport(ctx, id)
		if err != nil {
			return vault.ImportJob{}, err
		}
		desc := fmt.Sprintf("%-9s ok %d failed %d", j.Status, j.Successes, j.Failures)
		if j.Ended() {
			p.finish(desc, j.Successes+j.Failures, j.Total)
			return j, nil
		}
		p.update(desc, j.Successes+j.Failures, j.Total)
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return vault.ImportJob{}, err
		}
	}
}

// writeMapping writes the mapping of file import id to path and prints the
// failed rows and the counts on errOut.
func writeMapping(ctx context.Context, svc vault.FileImports, a vault.Actor, id uuid.UUID, path string, errOut io.Writer) error {
	m, err := newMappingFile(path)
	if err != nil {
		return err
	}
	var created, existing, failed int
	err = svc.ImportMapping(ctx, a, id, func(l vault.MappingLine) error {
		switch l.Status {
		case vault.FileRowCreated:
			created++
		case vault.FileRowExisting:
			existing++
		default:
			failed++
			fmt.Fprintf(errOut, "row %d: %s\n", l.Row, l.Reason)
		}
		return m.write(l)
	})
	if cerr := m.close(); err == nil {
		err = cerr
	}
	fmt.Fprintf(errOut, "%d created, %d already present, %d failed\n", created, existing, failed)
	return err
}

// mappingFile is the CSV an import answers with: per row, the card's id in
// the file, its token, fingerprint and masked number, or why it failed.
// It never holds a full card number.
type mappingFile struct {
	f *os.File
	w *csv.Writer
}

// mappingHeader names the mapping file's columns.
var mappingHeader = vault.MappingColumns

// newMappingFile creates (or empties) path and writes its header; a run
// again after a failure writes the whole mapping anew.
func newMappingFile(path string) (*mappingFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the mapping file: %w", err)
	}
	m := &mappingFile{f: f, w: csv.NewWriter(f)}
	return m, m.w.Write(mappingHeader)
}

// write adds l's line.
func (m *mappingFile) write(l vault.MappingLine) error {
	return m.w.Write(l.Record())
}

// close flushes and closes the file.
func (m *mappingFile) close() error {
	m.w.Flush()
	if err := m.w.Error(); err != nil {
		_ = m.f.Close()
		return err
	}
	return m.f.Close()
}
