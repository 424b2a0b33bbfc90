package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
)

func newPGPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pgp", Short: "Manage the OpenPGP import keys card files are encrypted to"}
	key := &cobra.Command{Use: "key", Short: "Create, list and retire a tenant's OpenPGP import keys"}
	key.AddCommand(newPGPKeyCreateCmd(), newPGPKeyListCmd(), newPGPKeyRetireCmd())
	cmd.AddCommand(key)
	return cmd
}

func newPGPKeyCreateCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	cmd := &cobra.Command{
		Use:   "create --tenant ID",
		Short: "Make an RSA-4096 import key (private half wrapped by the root KEK); prints only the armored public key",
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
				k, err := a.svc.CreatePGPKey(ctx, a.cfg.actor(tenantID))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "import key %s, fingerprint %s\n", k.ID, k.Fingerprint)
				_, err = io.WriteString(cmd.OutOrStdout(), k.PublicKey)
				return err
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func newPGPKeyListCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	cmd := &cobra.Command{
		Use:   "list --tenant ID",
		Short: "List a tenant's import keys: id, fingerprint, bits, creation, retirement",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				keys, err := a.svc.ListPGPKeys(ctx, a.cfg.actor(tenantID))
				if err != nil {
					return err
				}
				return printPGPKeys(cmd.OutOrStdout(), keys)
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// printPGPKeys writes keys as a table; it returns the writer's error.
func printPGPKeys(out io.Writer, keys []vault.PGPKey) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tFINGERPRINT\tBITS\tCREATED\tRETIRED")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", k.ID, k.Fingerprint, k.Bits, k.CreatedAt.Format(time.RFC3339), optionalTime(k.RetiredAt))
	}
	return w.Flush()
}

func newPGPKeyRetireCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	cmd := &cobra.Command{
		Use:   "retire KEY_ID --tenant ID",
		Short: "Retire an import key: its private half is dropped for good, files encrypted to it no longer open",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			keyID, err := uuid.Parse(args[0])
			if err != nil {
				return vault.InvalidParam(vault.CodeParameterInvalid, "KEY_ID", "the key id must be a UUID")
			}
			ctx := cmd.Context()
			return withApp(ctx, &raw, func(a *app) error {
				k, err := a.svc.RetirePGPKey(ctx, a.cfg.actor(tenantID), keyID)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "import key %s retired\n", k.ID)
				return nil
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}
