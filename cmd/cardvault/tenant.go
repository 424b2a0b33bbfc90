package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants"}
	cmd.AddCommand(newTenantCreateCmd(), newTenantListCmd(), newTenantDestroyCmd())
	return cmd
}

func newTenantCreateCmd() *cobra.Command {
	var raw rawConfig
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant with fresh keysets; prints only its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd.Context(), &raw, func(a *app) error {
				t, err := a.svc.CreateTenantAs(cmd.Context(), a.cfg.Operator, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), t.ID)
				return nil
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

func newTenantListCmd() *cobra.Command {
	var raw rawConfig
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every tenant: id, name, creation, live API keys and tokens (destroyed ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd.Context(), &raw, func(a *app) error {
				tenants, err := a.svc.ListTenants(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					return printTenantsJSON(cmd.OutOrStdout(), tenants)
				}
				return printTenants(cmd.OutOrStdout(), tenants)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	raw.bindVault(cmd.Flags())
	return cmd
}

// printTenants writes tenants as a table; it returns the writer's error.
func printTenants(out io.Writer, tenants []vault.TenantSummary) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tCREATED\tAPI KEYS\tTOKENS\tDESTROYED")
	for _, t := range tenants {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339),
			t.ActiveAPIKeys, t.Tokens, optionalTime(t.DestroyedAt))
	}
	return w.Flush()
}

// tenantJSON is one tenant of `tenant list --json`.
type tenantJSON struct {
	ID            uuid.UUID `json:"id"`
	Name          string    `json:"name"`
	CreatedAt     string    `json:"created_at"`
	ActiveAPIKeys int       `json:"active_api_keys"`
	Tokens        int64     `json:"tokens"`
	DestroyedAt   *string   `json:"destroyed_at"`
}

// printTenantsJSON writes tenants as a JSON array; it returns the writer's
// error.
func printTenantsJSON(out io.Writer, tenants []vault.TenantSummary) error {
	list := make([]tenantJSON, 0, len(tenants))
	for _, t := range tenants {
		j := tenantJSON{ID: t.ID, Name: t.Name, CreatedAt: vault.Timestamp(t.CreatedAt),
			ActiveAPIKeys: t.ActiveAPIKeys, Tokens: t.Tokens}
		if t.DestroyedAt != nil {
			d := vault.Timestamp(*t.DestroyedAt)
			j.DestroyedAt = &d
		}
		list = append(list, j)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

func newTenantDestroyCmd() *cobra.Command {
	var raw rawConfig
	var confirm bool
	cmd := &cobra.Command{
		Use:   "destroy ID --confirm",
		Short: "Crypto-shred a tenant: delete its keysets and tokens for good, revoke its keys; the audit trail stays",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTenantID(args[0])
			if err != nil {
				return err
			}
			if !confirm {
				return actionf(nil, "this destroys every token of tenant %s for good; to go ahead: `cardvault tenant destroy %s --confirm`", id, id)
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				n, err := destroyTenant(cmd.Context(), a.svc, a.cfg.Operator, id)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s destroyed: %d tokens are unreadable and deleted\n", id, n)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "yes, destroy it")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

// destroyTenant crypto-shreds tenant id and returns how many tokens went;
// for an unknown or already destroyed tenant the error says which.
func destroyTenant(ctx context.Context, svc *postgres.Service, operator string, id uuid.UUID) (int64, error) {
	n, err := svc.DestroyTenantAs(ctx, operator, id)
	if vault.ErrorKind(err) != vault.KindNotFound {
		return n, err
	}
	if t, lookupErr := svc.GetTenant(ctx, id); lookupErr == nil {
		return 0, actionf(err, "tenant %s (%s) was destroyed already; nothing to do (`cardvault tenant list` shows the live ones)", id, t.Name)
	}
	return 0, errNoTenant(id, err)
}

// withApp parses the configuration, opens the vault, runs fn and closes it.
func withApp(ctx context.Context, raw *rawConfig, fn func(a *app) error) error {
	cfg, err := raw.parse(true)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, newLogger(cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(a)
}

// requireTenant returns an error naming the tenant and how to list them
// unless a tenant with id exists.
func requireTenant(ctx context.Context, svc *postgres.Service, id uuid.UUID) error {
	_, err := svc.GetTenant(ctx, id)
	return ifNotFound(err, errNoTenant(id, err))
}
