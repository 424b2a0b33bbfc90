package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
)

func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants"}
	var raw rawConfig
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant with fresh keysets; prints only its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd.Context(), &raw, func(a *app) error {
				t, err := a.svc.CreateTenant(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), t.ID)
				return nil
			})
		},
	}
	raw.bindServer(create.Flags())
	cmd.AddCommand(create, newTenantListCmd(), newTenantDestroyCmd())
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
	raw.bindServer(cmd.Flags())
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
			id, err := parseID("tenant", args[0])
			if err != nil {
				return err
			}
			if !confirm {
				return errors.New("this destroys every token of the tenant for good: add --confirm")
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				n, err := a.svc.DestroyTenant(cmd.Context(), id)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s destroyed: %d tokens are unreadable and deleted\n", id, n)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "yes, destroy it")
	raw.bindServer(cmd.Flags())
	return cmd
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
