package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
)

// errAuditBroken makes `audit verify` exit 1 after printing the bad rows.
var errAuditBroken = errors.New("the audit trail does not verify: rows were changed, removed or reordered")

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify the tamper-evident audit trail"}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditCheckpointCmd())
	return cmd
}

// tenantFlag parses an optional --tenant value ("system" names the system
// chain) and checks the tenant exists.
func tenantFlag(ctx context.Context, a *app, tenant string) (*uuid.UUID, error) {
	if tenant == "" {
		return nil, nil
	}
	if tenant == "system" {
		return &vault.SystemChain, nil
	}
	id, err := parseTenantID(tenant)
	if err != nil {
		return nil, err
	}
	return &id, requireTenant(ctx, a.svc, id)
}

func newAuditCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "checkpoint", Short: "Checkpoint the audit chains' heads and export the checkpoints"}
	var raw rawConfig
	var tenant, out string
	export := &cobra.Command{
		Use:   "export [--tenant ID] [--out FILE]",
		Short: "Write a fresh checkpoint of every moved lane, then print every checkpoint as JSON lines",
		Long: "Checkpoints the head of every audit lane that moved since its last checkpoint (the serving\n" +
			"process also does every VAULT_AUDIT_CHECKPOINT_INTERVAL), then prints the checkpoints, one\n" +
			"JSON object a line, each MAC'd with its chain's key. Keep the output outside the database\n" +
			"(append it to a write-once store); `cardvault audit verify --checkpoints FILE` later proves\n" +
			"that no row a checkpoint saw was removed or rewritten.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd.Context(), &raw, func(a *app) error {
				sel, err := tenantFlag(cmd.Context(), a, tenant)
				if err != nil {
					return err
				}
				if _, err := a.svc.WriteAuditCheckpoints(cmd.Context(), sel); err != nil {
					return err
				}
				cps, err := a.svc.AuditCheckpoints(cmd.Context(), sel)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if out != "" {
					f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
					if err != nil {
						return actionf(err, "cannot write %s: %v", out, err)
					}
					defer f.Close()
					w = f
				}
				enc := json.NewEncoder(w)
				for _, c := range cps {
					if err := enc.Encode(c); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	export.Flags().StringVar(&tenant, "tenant", "", "only this tenant's chain (\"system\": the chain of rows without a tenant)")
	export.Flags().StringVar(&out, "out", "", "append to this file instead of printing")
	raw.bindVault(export.Flags())
	cmd.AddCommand(export)
	return cmd
}

// ofChain returns the checkpoints of the tenant's chain, or all when
// tenant is nil.
func ofChain(cps []vault.AuditCheckpoint, tenant *uuid.UUID) []vault.AuditCheckpoint {
	if tenant == nil {
		return cps
	}
	name := tenant.String()
	if *tenant == vault.SystemChain {
		name = "system"
	}
	var out []vault.AuditCheckpoint
	for _, c := range cps {
		if c.Chain == name {
			out = append(out, c)
		}
	}
	return out
}

// readCheckpoints reads an export of `audit checkpoint export`.
func readCheckpoints(path string) ([]vault.AuditCheckpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, actionf(err, "cannot read %s: %v", path, err)
	}
	defer f.Close()
	var cps []vault.AuditCheckpoint
	dec := json.NewDecoder(f)
	for {
		var c vault.AuditCheckpoint
		if err := dec.Decode(&c); errors.Is(err, io.EOF) {
			return cps, nil
		} else if err != nil {
			return nil, actionf(err, "%s is not an export of `cardvault audit checkpoint export`: %v", path, err)
		}
		cps = append(cps, c)
	}
}

func newAuditVerifyCmd() *cobra.Command {
	var raw rawConfig
	var tenant, checkpoints string
	var asJSON, resume bool
	cmd := &cobra.Command{
		Use:   "verify [--tenant ID] [--checkpoints FILE] [--resume] [--json]",
		Short: "Recompute every audit chain, check its checkpoints, and name the first bad row of each",
		Long: "Walks every lane of every chain (or only the tenant's) from its retention checkpoint (with\n" +
			"--resume: from where the last verification found it whole), recomputes each keyed hash and\n" +
			"compares the end with the recorded head, in short reads; then checks the stored checkpoints\n" +
			"and those of --checkpoints FILE (an export): a lane ending before a checkpoint is a truncated\n" +
			"tail, a checkpoint's row with another hash a rewrite. Exits 1 and names every break.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var sel *uuid.UUID
			if tenant != "" {
				id, err := parseTenantID(tenant)
				if err != nil {
					return err
				}
				sel = &id
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				if sel != nil {
					if err := requireTenant(cmd.Context(), a.svc, *sel); err != nil {
						return err
					}
				}
				var cps []vault.AuditCheckpoint
				if checkpoints != "" {
					var err error
					if cps, err = readCheckpoints(checkpoints); err != nil {
						return err
					}
				}
				// Rows written before the trail was written once may wait for their v1 chain.
				if _, err := a.svc.ChainAudit(cmd.Context()); err != nil {
					return err
				}
				verify := a.svc.VerifyAudit
				if resume {
					verify = a.svc.VerifyAuditResume
				}
				r, err := verify(cmd.Context(), sel)
				if err != nil {
					return err
				}
				if err := a.svc.VerifyAuditCheckpoints(cmd.Context(), ofChain(cps, sel), &r); err != nil {
					return err
				}
				if err := printAuditReport(cmd.OutOrStdout(), r, asJSON); err != nil {
					return err
				}
				if !r.OK {
					return errAuditBroken
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "verify only this tenant's chain")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&checkpoints, "checkpoints", "", "also check the checkpoints of this export (`cardvault audit checkpoint export`)")
	cmd.Flags().BoolVar(&resume, "resume", false, "walk each lane only from where the last verification found it whole")
	raw.bindVault(cmd.Flags())
	return cmd
}

// printAuditReport writes the one-line verdict, or every chain's first bad
// row, or the JSON report.
func printAuditReport(out io.Writer, r vault.AuditReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if r.OK {
		_, err := fmt.Fprintf(out, "ok: %d rows in %d chains, %d not yet chained\n", r.Rows, r.Chains, r.Unchained)
		return err
	}
	for _, b := range r.Breaks {
		id := "-"
		if b.ID != 0 {
			id = fmt.Sprint(b.ID)
		}
		if _, err := fmt.Fprintf(out, "BROKEN chain %s: first bad row id %s, seq %d: %s: %s\n",
			b.Chain, id, b.Seq, b.Reason, b.Message); err != nil {
			return err
		}
	}
	return nil
}
