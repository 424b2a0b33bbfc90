package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
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
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			sc, err := vault.ParseScopes(scopes)
			if err != nil {
				return actionf(err, "%s; the scopes are %s, e.g. --scopes tokens:create,tokens:read", vault.AsError(err).Message, scopeList())
			}
			in, err := newAPIKeyInput(tenantID, sc, description, expiresIn)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				in.Operator = a.cfg.Operator
				secret, _, err := a.svc.IssueAPIKey(cmd.Context(), in)
				if err != nil {
					return ifNotFound(err, errNoTenant(tenantID, err))
				}
				fmt.Fprintln(cmd.OutOrStdout(), secret)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().StringVar(&scopes, "scopes", "", "comma-separated scopes: "+scopeList())
	cmd.Flags().StringVar(&description, "description", "", "what the key is for")
	cmd.Flags().StringVar(&expiresIn, "expires-in", "", "refuse the key (401) after this long, e.g. 90d or 12h; never when empty")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("scopes")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

// newAPIKeyInput parses the flags of `apikey create`. It returns an error
// naming the flag at fault.
func newAPIKeyInput(tenantID uuid.UUID, sc []vault.Scope, description, expiresIn string) (vault.NewAPIKey, error) {
	in := vault.NewAPIKey{TenantID: tenantID, Scopes: sc, Description: description}
	if expiresIn != "" {
		var err error
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
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				if err := requireTenant(cmd.Context(), a.svc, tenantID); err != nil {
					return err
				}
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
	raw.bindVault(cmd.Flags())
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
		Use:   "revoke KEY_ID|PREFIX",
		Short: "Revoke an API key at once, named by its id or by the prefix `apikey list` shows (cvk_0123abcd…)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd.Context(), &raw, func(a *app) error {
				k, err := revokeAPIKey(cmd.Context(), a.svc, a.cfg.Operator, args[0])
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "revoked API key %s (%s) of tenant %s\n", k.ID, shownPrefix(k.Prefix), k.TenantID)
				}
				return err
			})
		},
	}
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorRequired)
	return cmd
}

// listKeysHint is the command that shows API key ids and prefixes.
const listKeysHint = "list them with `cardvault apikey list --tenant TENANT_ID` (tenant ids: `cardvault tenant list`)"

// shownPrefix is how listings show a key's prefix.
func shownPrefix(p string) string { return "cvk_" + p + "_…" }

// revokeAPIKey revokes the live key ref names (an id or a prefix) and
// returns it; the error says when ref names no key, several keys or a key
// revoked already.
func revokeAPIKey(ctx context.Context, svc *postgres.Service, operator, ref string) (vault.APIKey, error) {
	k, err := findAPIKey(ctx, svc, ref)
	if err != nil {
		return k, err
	}
	if k.RevokedAt == nil {
		k, err = svc.RevokeAPIKeyAs(ctx, operator, k.ID)
		if vault.ErrorKind(err) != vault.KindNotFound {
			return k, err
		}
		k, _ = svc.APIKeyByID(ctx, k.ID) // revoked meanwhile
	}
	return k, actionf(nil, "API key %s (%s) of tenant %s was revoked already; nothing to do (`cardvault apikey list --tenant %s` shows its live keys)",
		k.ID, shownPrefix(k.Prefix), k.TenantID, k.TenantID)
}

// findAPIKey returns the key ref names: a key id, or a prefix of the
// non-secret key prefix with or without "cvk_" and the trailing "_…".
func findAPIKey(ctx context.Context, svc *postgres.Service, ref string) (vault.APIKey, error) {
	if id, err := uuid.Parse(ref); err == nil {
		k, err := svc.APIKeyByID(ctx, id)
		return k, ifNotFound(err, actionf(err, "no API key %s; %s", id, listKeysHint))
	}
	prefix := keyPrefixOf(ref)
	keys, err := svc.APIKeysByPrefix(ctx, prefix, maxPrefixMatches)
	switch {
	case vault.ErrorKind(err) == vault.KindInvalid:
		return vault.APIKey{}, actionf(err, "%q is neither an API key id nor a key prefix such as cvk_0123abcd; %s", ref, listKeysHint)
	case err != nil:
		return vault.APIKey{}, err
	case len(keys) == 0:
		return vault.APIKey{}, actionf(nil, "no API key with prefix cvk_%s…; %s", prefix, listKeysHint)
	case len(keys) > 1:
		return vault.APIKey{}, errAmbiguousPrefix(prefix, keys)
	}
	return keys[0], nil
}

// maxPrefixMatches is how many of the keys an ambiguous prefix matches the
// refusal names.
const maxPrefixMatches = 5

// keyPrefixOf strips what listings add around a key prefix: "cvk_", the
// trailing "_…" (or "_", "…", "...") and surrounding space.
func keyPrefixOf(ref string) string {
	p := strings.ToLower(strings.TrimSpace(ref))
	p = strings.TrimPrefix(p, "cvk_")
	for _, suffix := range []string{"...", "…", "_"} {
		p = strings.TrimSuffix(p, suffix)
	}
	return p
}

// errAmbiguousPrefix refuses a prefix that several keys share, naming them.
func errAmbiguousPrefix(prefix string, keys []vault.APIKey) error {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = fmt.Sprintf("%s (%s)", k.ID, shownPrefix(k.Prefix))
	}
	return actionf(nil, "prefix cvk_%s… matches %d API keys: %s; give more of the prefix, or the key id, from `cardvault apikey list --tenant TENANT_ID`",
		prefix, len(keys), strings.Join(names, ", "))
}
