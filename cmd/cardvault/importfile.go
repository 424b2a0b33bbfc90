package main

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// importFileWorkers is how many rows of a file are tokenized at once, so
// that they share the vault's batched commits.
const importFileWorkers = 16

// fileImport is one `import file` run's settings.
type fileImport struct {
	tenant   uuid.UUID
	format   cardfile.Format
	path     string // the encrypted file
	mapping  string // where the mapping file goes
	operator string // the person running the import
}

func newImportFileCmd() *cobra.Command {
	var raw rawConfig
	var tenant, format, mapping string
	cmd := &cobra.Command{
		Use:   "file --tenant ID --format stripe-json|stripe-csv|jsonl FILE.pgp",
		Short: "Tokenize every card of an OpenPGP-encrypted card file (Stripe's PAN export) and write the mapping file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fi, err := parseFileImport(tenant, format, args[0], mapping)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				if err := requireTenant(ctx, a.svc, fi.tenant); err != nil {
					return err
				}
				fi.operator = a.cfg.Operator
				return runFileImport(ctx, a.svc, fi, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&format, "format", "", "the clear file's layout: stripe-json, stripe-csv or jsonl")
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

// runFileImport decrypts fi's file as it reads it, tokenizes its rows and
// writes the mapping file; clear card bytes stay in memory, a row at a time.
// It prints the mapping file's path on out and progress and failed rows on
// errOut. It returns an error when the file cannot be opened, decrypted or
// read to its end, or the vault fails; the rows before keep their tokens,
// so running it again is safe.
func runFileImport(ctx context.Context, svc *postgres.Service, fi fileImport, out, errOut io.Writer) error {
	f, err := os.Open(fi.path)
	if err != nil {
		return fmt.Errorf("open the card file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open the card file: %w", err)
	}
	cr := &countingReader{r: f}
	clear, err := svc.OpenPGPMessage(ctx, vault.OperatorNamed(fi.tenant, fi.operator), cr)
	if err != nil {
		return err
	}
	rows, err := cardfile.NewReader(clear, fi.format)
	if err != nil {
		return err
	}
	m, err := newMappingFile(fi.mapping)
	if err != nil {
		return err
	}
	prog := newProgress(errOut, "KiB")
	counts, runErr := cardfile.Import(ctx, svc, vault.OperatorNamed(fi.tenant, fi.operator), rows, importFileWorkers, func(r cardfile.Result) error {
		if r.Err != nil {
			fmt.Fprintf(errOut, "row %d: %s: %s\n", r.Row, r.Err.Code, r.Err.Message)
		}
		prog.update("importing", cr.n.Load()/1024, st.Size()/1024)
		return m.write(r)
	})
	prog.finish("importing", cr.n.Load()/1024, st.Size()/1024)
	if err := m.close(); err != nil && runErr == nil {
		runErr = err
	}
	fmt.Fprintf(errOut, "%d created, %d already present, %d failed\n", counts.Created, counts.Existing, counts.Failed)
	fmt.Fprintln(out, fi.mapping)
	return runErr
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

// Read reads from the underlying reader.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// mappingFile is the CSV an import answers with: per row, the card's id in
// the file, its token, fingerprint and masked number, or why it failed.
// It never holds a full card number.
type mappingFile struct {
	f *os.File
	w *csv.Writer
}

// mappingHeader names the mapping file's columns.
var mappingHeader = []string{"row", "old_id", "token_id", "fingerprint", "masked_number", "status", "reason"}

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

// write adds r's line.
func (m *mappingFile) write(r cardfile.Result) error {
	line := []string{strconv.Itoa(r.Row), r.OldID, "", "", "", "", ""}
	switch {
	case r.Err != nil:
		line[5], line[6] = "failed", r.Err.Code+": "+r.Err.Message
	default:
		line[2], line[4] = r.Token.ID.String(), r.Token.MaskedAccountNumber()
		line[3] = base64.RawURLEncoding.EncodeToString(r.Token.Fingerprint)
		line[5] = map[bool]string{true: "created", false: "existing"}[r.Created]
	}
	return m.w.Write(line)
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
