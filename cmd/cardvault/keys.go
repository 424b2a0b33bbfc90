package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Rotate, re-encrypt, retire and report the key hierarchy"}
	cmd.AddCommand(newKeysStatusCmd(), newKeysRotateCmd(), newKeysReencryptCmd(), newKeysRetireCmd(), newKeysRotateRootCmd())
	return cmd
}

// tenantFlags selects one tenant (--tenant) or every tenant (--all).
type tenantFlags struct {
	tenant string
	all    bool
}

func (f *tenantFlags) bind(cmd *cobra.Command, allowNone bool) {
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant id")
	cmd.Flags().BoolVar(&f.all, "all", false, "every tenant")
	if !allowNone {
		cmd.MarkFlagsOneRequired("tenant", "all")
	}
	cmd.MarkFlagsMutuallyExclusive("tenant", "all")
}

// ids returns the selected tenant ids (nil meaning every tenant); the
// error names a tenant that does not exist.
func (f *tenantFlags) ids(ctx context.Context, svc *postgres.Service) ([]uuid.UUID, error) {
	if f.tenant == "" {
		return svc.TenantIDs(ctx)
	}
	id, err := parseTenantID(f.tenant)
	if err != nil {
		return nil, err
	}
	return []uuid.UUID{id}, requireTenant(ctx, svc, id)
}

// eachTenant opens the vault and runs fn for every selected tenant,
// stopping at the first error, which names the tenant.
func eachTenant(ctx context.Context, raw *rawConfig, sel *tenantFlags, fn func(a *app, id uuid.UUID) error) error {
	return withApp(ctx, raw, func(a *app) error {
		ids, err := sel.ids(ctx, a.svc)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := fn(a, id); err != nil {
				return tenantError(id, err)
			}
		}
		return nil
	})
}

// tenantError prefixes err with the tenant it concerns, unless it is an
// actionError, which names the tenant itself.
func tenantError(id uuid.UUID, err error) error {
	if errors.As(err, new(*actionError)) {
		return err
	}
	return fmt.Errorf("tenant %s: %w", id, err)
}

func newKeysStatusCmd() *cobra.Command {
	var raw rawConfig
	var sel tenantFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--tenant ID] [--json]",
		Short: "Every key version, its state, age and the tokens it protects (counted in the database)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd.Context(), &raw, func(a *app) error {
				ids, err := sel.ids(cmd.Context(), a.svc)
				if err != nil {
					return err
				}
				r, err := a.svc.KeyReport(cmd.Context(), a.cfg.actor(uuid.Nil), ids, a.cfg.KEKURI, a.cfg.Cryptoperiod)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(r)
				}
				return printKeyReport(cmd.OutOrStdout(), r)
			})
		},
	}
	sel.bind(cmd, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the shape of GET /keys)")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	raw.bindCryptoperiod(cmd.Flags())
	return cmd
}

// printKeyReport writes the report as a table with overdue and
// near-the-limit keys flagged.
func printKeyReport(out io.Writer, r vault.KeyReport) error {
	fmt.Fprintf(out, "root KEK: %s   cryptoperiod: %d days\n\n", r.RootKEKURI, r.CryptoperiodDays)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tKEY ID\tSTATE\tTOKENS\tENCRYPTIONS\tCREATED\tAGE\tFLAGS")
	for _, t := range r.Tenants {
		for _, k := range t.Keys {
			fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%s\t%dd\t%s\n", t.TenantID, k.KeyID, k.State, k.Tokens, k.Encryptions,
				createdAt(k.CreatedAt), k.AgeDays, keyFlags(k))
		}
		fmt.Fprintf(w, "%s\t%d\tfingerprint\t\t\t\t\t\n", t.TenantID, t.FingerprintKeyID)
	}
	return w.Flush()
}

func createdAt(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func keyFlags(k vault.KeyVersion) string {
	flags := ""
	if k.Overdue {
		flags += "OVERDUE(rotate) "
	}
	if k.NearLimit {
		flags += "NEAR-2^32-LIMIT(rotate) "
	}
	return flags
}

func newKeysRotateCmd() *cobra.Command {
	var raw rawConfig
	var sel tenantFlags
	cmd := &cobra.Command{
		Use:   "rotate --tenant ID | --all",
		Short: "Add a fresh data key, let every replica load it, then make it primary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return eachTenant(cmd.Context(), &raw, &sel, func(a *app, id uuid.UUID) error {
				sayRotationWait(cmd.ErrOrStderr(), id, a.cfg)
				keyID, err := a.svc.RotateDataKey(cmd.Context(), a.cfg.actor(id), a.cfg.propagation())
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: key %d is primary\n", id, keyID)
				}
				return err
			})
		},
	}
	sel.bind(cmd, false)
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	raw.bindKeyRefresh(cmd.Flags())
	return cmd
}

// sayRotationWait tells the operator what a rotation waits for, since it
// is silent for two propagation delays.
func sayRotationWait(w io.Writer, tenant uuid.UUID, cfg config) {
	fmt.Fprintf(w, "tenant %s: adding a data key, then waiting %s (2 × --key-refresh %s + 1s) for every replica to load it, "+
		"promoting it to primary and waiting %s again so every replica encrypts with it…\n",
		tenant, cfg.propagation(), cfg.KeyRefresh, cfg.propagation())
}

func newKeysReencryptCmd() *cobra.Command {
	var raw rawConfig
	var sel tenantFlags
	var wait bool
	cmd := &cobra.Command{
		Use:   "reencrypt --tenant ID | --all [--wait]",
		Short: "Re-seal every token under the primary key (online, resumable); --wait runs it here with a progress bar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return eachTenant(cmd.Context(), &raw, &sel, func(a *app, id uuid.UUID) error {
				return reencrypt(cmd.Context(), a.svc, a.cfg.actor(id), wait, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	sel.bind(cmd, false)
	cmd.Flags().BoolVar(&wait, "wait", false, "run the job here (or follow the replica running it) and show progress")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

// reencrypt starts a tenant's job and, with wait, works on it in this
// process while a progress bar follows it to the end.
func reencrypt(ctx context.Context, svc *postgres.Service, op vault.Actor, wait bool, out, errOut io.Writer) error {
	tenant := op.TenantID
	job, _, err := svc.StartReencrypt(ctx, op)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "tenant %s: re-encryption job %s (%d tokens)\n", tenant, job.ID, job.Total)
	if !wait {
		return nil
	}
	workCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _, _ = svc.RunOneKeyJob(workCtx, workerName(), job.ID) }()
	return followKeyJob(ctx, svc, job, errOut)
}

// followKeyJob shows the job's progress with rate and time left until it
// ends; it returns an error when the job failed.
func followKeyJob(ctx context.Context, svc *postgres.Service, job vault.KeyJob, errOut io.Writer) error {
	p := newProgress(errOut, "tokens")
	for {
		j, err := svc.GetKeyJob(ctx, job.TenantID, job.ID)
		if err != nil {
			return err
		}
		switch j.Status {
		case "finished":
			p.finish("re-encrypted", j.Done, j.Total)
			return nil
		case "failed":
			p.finish("re-encryption failed", j.Done, j.Total)
			return actionf(nil, "re-encryption job %s of tenant %s failed: %s; run `cardvault keys reencrypt --tenant %s --wait` again to resume it",
				j.ID, j.TenantID, j.Error, j.TenantID)
		}
		p.update("re-encrypting", j.Done, j.Total)
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func newKeysRetireCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	var keyID uint32
	var destroy bool
	cmd := &cobra.Command{
		Use:   "retire --tenant ID --key KEY_ID [--destroy]",
		Short: "Disable a non-primary data key no token needs; --destroy then deletes its material",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				if err := requireTenant(cmd.Context(), a.svc, id); err != nil {
					return err
				}
				if err := a.svc.RetireDataKey(cmd.Context(), a.cfg.actor(id), keyID, destroy); err != nil {
					return retireError(id, keyID, err)
				}
				verb := "disabled"
				if destroy {
					verb = "destroyed"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: key %d %s\n", id, keyID, verb)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().Uint32Var(&keyID, "key", 0, "the key id (see keys status)")
	cmd.Flags().BoolVar(&destroy, "destroy", false, "delete the disabled key's material for good")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("key")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

// retireError words the refusals of a retire with the command that clears
// them; other errors pass through.
func retireError(tenant uuid.UUID, keyID uint32, err error) error {
	e := vault.AsError(err)
	switch {
	case e.Code == "key_is_primary":
		return actionf(err, "key %d is the primary key of tenant %s: rotate first (`cardvault keys rotate --tenant %s`), "+
			"re-encrypt (`cardvault keys reencrypt --tenant %s --wait`), then retire it", keyID, tenant, tenant, tenant)
	case e.Code == "key_in_use":
		return actionf(err, "tenant %s: %s; re-encrypt (`cardvault keys reencrypt --tenant %s --wait`), then retire again",
			tenant, strings.SplitN(e.Message, ":", 2)[0], tenant)
	case e.Code == "key_not_disabled":
		return actionf(err, "key %d of tenant %s is still enabled: retire it first (`cardvault keys retire --tenant %s --key %d`), then destroy it",
			keyID, tenant, tenant, keyID)
	case e.Kind == vault.KindNotFound:
		return actionf(err, "no key %d in the data keyset of tenant %s; list them with `cardvault keys status --tenant %s`", keyID, tenant, tenant)
	}
	return err
}

func newKeysRotateRootCmd() *cobra.Command {
	var raw rawConfig
	var newURI string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rotate-root --new-kek-uri URI [--dry-run]",
		Short: "Re-wrap every tenant keyset under a new root KEK (resumable); then run with only the new URI",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := raw.parse(true)
			if err != nil {
				return err
			}
			newKEK, err := crypto.OpenKEK(cmd.Context(), newURI)
			if err != nil {
				return errOpenKEK("new root KEK", "--new-kek-uri", newURI, err)
			}
			a, err := open(cmd.Context(), cfg, newLogger(cfg.LogLevel), false)
			if err != nil {
				return err
			}
			defer a.Close()
			r, err := a.svc.RotateRootKEKAs(cmd.Context(), cfg.Operator, newKEK, newURI, dryRun)
			if err != nil {
				return err
			}
			return printRootRotation(cmd.OutOrStdout(), r, newURI, dryRun)
		},
	}
	cmd.Flags().StringVar(&newURI, "new-kek-uri", "", "the new root KEK")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check that every keyset opens and report what would change")
	_ = cmd.MarkFlagRequired("new-kek-uri")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

func printRootRotation(out io.Writer, r vault.RootRotation, newURI string, dryRun bool) error {
	if r.AuditKeys > 0 {
		if _, err := fmt.Fprintf(out, "audit chain keys: %d\n", r.AuditKeys); err != nil {
			return err
		}
	}
	if dryRun {
		_, err := fmt.Fprintf(out, "dry run: %d keysets of %d tenants would be re-wrapped under %s; %d already are\n",
			r.Keysets, r.Tenants, crypto.RedactKEKURI(newURI), r.Already)
		return err
	}
	uri := crypto.RedactKEKURI(newURI)
	_, err := fmt.Fprintf(out, "re-wrapped %d keysets of %d tenants under %s (%d already were)\n"+
		"now set VAULT_KEK_URI=%s and restart every replica; a `cardvault dev`: stop it, then `VAULT_KEK_URI=%s make dev`\n",
		r.Keysets, r.Tenants, uri, r.Already, uri, uri)
	return err
}
