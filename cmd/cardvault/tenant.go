package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
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
	cmd.AddCommand(create, newTenantDestroyCmd())
	return cmd
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
