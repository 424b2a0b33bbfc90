package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
)

func newAPIKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage API keys"}
	cmd.AddCommand(newAPIKeyCreateCmd(), newAPIKeyListCmd(), newAPIKeyRevokeCmd())
	return cmd
}

func newAPIKeyCreateCmd() *cobra.Command {
	var raw rawConfig
	var tenant, scopes, description, expiresIn string
	cmd := &cobra.Command{
		Use:   "create --tenant ID --scopes tokens:create,tokens:read [--expires-in 90d]",
		Short: "Create an API key; prints only the secret, which is shown once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := newAPIKeyInput(tenant, scopes, description, expiresIn)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				secret, _, err := a.svc.IssueAPIKey(cmd.Context(), in)
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), secret)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&scopes, "scopes", "", "comma-separated scopes: "+scopeList())
	cmd.Flags().StringVar(&description, "description", "", "what the key is for")
	cmd.Flags().StringVar(&expiresIn, "expires-in", "", "refuse the key (401) after this long, e.g. 90d or 12h; never when empty")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("scopes")
	raw.bindServer(cmd.Flags())
	return cmd
}

// newAPIKeyInput parses the flags of `apikey create`. It returns an error
// naming the flag at fault.
func newAPIKeyInput(tenant, scopes, description, expiresIn string) (vault.NewAPIKey, error) {
	tenantID, err := parseID("tenant", tenant)
	if err != nil {
		return vault.NewAPIKey{}, err
	}
	sc, err := vault.ParseScopes(scopes)
	if err != nil {
		return vault.NewAPIKey{}, err
	}
	in := vault.NewAPIKey{TenantID: tenantID, Scopes: sc, Description: description}
	if expiresIn != "" {
		if in.ExpiresIn, err = parseDays(expiresIn); err != nil || in.ExpiresIn <= 0 {
			return vault.NewAPIKey{}, fmt.Errorf("--expires-in %q must be a positive duration such as 90d or 12h", expiresIn)
		}
	}
	return in, nil
}

func scopeList() string {
	s := make([]string, len(vault.AllScopes))
	for i, sc := range vault.AllScopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ",")
}

func newAPIKeyListCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	cmd := &cobra.Command{
		Use:   "list --tenant ID",
		Short: "List a tenant's API keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenantID, err := parseID("tenant", tenant)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				keys, err := a.svc.ListAPIKeys(cmd.Context(), tenantID)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tPREFIX\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED\tDESCRIPTION")
				for _, k := range keys {
					fmt.Fprintf(w, "%s\tcvk_%s_…\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, joinScopes(k.Scopes),
						k.CreatedAt.UTC().Format(time.RFC3339), expiresAt(k, a.svc.Now()), optionalTime(k.LastUsedAt),
						optionalTime(k.RevokedAt), k.Description)
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	_ = cmd.MarkFlagRequired("tenant")
	raw.bindServer(cmd.Flags())
	return cmd
}

func joinScopes(scopes []vault.Scope) string {
	s := make([]string, len(scopes))
	for i, sc := range scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ",")
}

// optionalTime formats t as RFC 3339 UTC, or "-" when nil.
func optionalTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// expiresAt formats k's expiry, "never" without one, marked "(expired)"
// once past at now.
func expiresAt(k vault.APIKey, now time.Time) string {
	switch {
	case k.ExpiresAt == nil:
		return "never"
	case k.Expired(now):
		return optionalTime(k.ExpiresAt) + " (expired)"
	}
	return optionalTime(k.ExpiresAt)
}

func newAPIKeyRevokeCmd() *cobra.Command {
	var raw rawConfig
	cmd := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an API key at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("API key (see `cardvault apikey list`)", args[0])
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				k, err := a.svc.RevokeAPIKey(cmd.Context(), id)
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "revoked API key %s of tenant %s\n", k.ID, k.TenantID)
				}
				return err
			})
		},
	}
	raw.bindServer(cmd.Flags())
	return cmd
}
