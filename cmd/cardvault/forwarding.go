package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

func newForwardingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "forwarding", Short: "Manage where a tenant's cards may be forwarded"}
	dest := &cobra.Command{Use: "destination", Short: "Manage a tenant's forwarding destinations (the allow-list)"}
	dest.AddCommand(newDestinationAddCmd(), newDestinationListCmd(), newDestinationRemoveCmd())
	cmd.AddCommand(dest, newPresetsCmd())
	return cmd
}

// destinationFlags are the settings of `forwarding destination add`.
type destinationFlags struct {
	tenant, url, preset, config   string
	signatureKeyFile              string
	clientCertFile, clientKeyFile string
}

// input reads the files the flags name and returns the destination input.
func (f destinationFlags) input() (vault.DestinationInput, error) {
	in := vault.DestinationInput{URL: f.url, Preset: f.preset}
	cfg, err := readArg(f.config)
	if err != nil {
		return in, fmt.Errorf("--config: %w", err)
	}
	in.Config = json.RawMessage(cfg)
	key, err := readArg(prefixFile(f.signatureKeyFile))
	if err != nil {
		return in, fmt.Errorf("--signature-key-file: %w", err)
	}
	in.SignatureSecret = card.NewSecret(strings.TrimSpace(key))
	if in.ClientCertificatePEM, err = readArg(prefixFile(f.clientCertFile)); err != nil {
		return in, fmt.Errorf("--client-cert: %w", err)
	}
	clientKey, err := readArg(prefixFile(f.clientKeyFile))
	in.ClientKeyPEM = card.NewSecret(clientKey)
	if err != nil {
		return in, fmt.Errorf("--client-key: %w", err)
	}
	return in, nil
}

// readArg returns s, or the contents of the file it names after "@".
func readArg(s string) (string, error) {
	path, ok := strings.CutPrefix(s, "@")
	if !ok {
		return s, nil
	}
	b, err := os.ReadFile(path)
	return string(b), err
}

// prefixFile turns a file flag into a readArg argument ("" stays "").
func prefixFile(path string) string {
	if path == "" {
		return ""
	}
	return "@" + path
}

func newDestinationAddCmd() *cobra.Command {
	var raw rawConfig
	var f destinationFlags
	cmd := &cobra.Command{
		Use:   "add --tenant ID (--preset NAME [--url URL] | --url URL --config JSON)",
		Short: "Allow a destination for the tenant's forwards; prints only its id",
		Long: "Allow a destination: a preset (see `cardvault forwarding presets`) with the processor URL, or a custom\n" +
			"destination whose --config is the JSON of POST /forwarding/destinations without url and preset:\n" +
			`  {"format":"json","fields":{"card_number":"card.number","card_expiry":[{"path":"card.exp_month","expiry":"MM"},` + "\n" +
			`   {"path":"card.exp_year","expiry":"YYYY"}]},"secret_headers":["X-Api-Key"],"timeout_ms":20000}` + "\n" +
			"--config @FILE reads it from a file. Secrets come from files and are sealed with the tenant's data key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenantID, err := parseTenantID(f.tenant)
			if err != nil {
				return err
			}
			in, err := f.input()
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				d, err := a.svc.CreateDestination(cmd.Context(), a.cfg.actor(tenantID), in)
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), d.ID)
				}
				return err
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.tenant, "tenant", "", "tenant id")
	fs.StringVar(&f.url, "url", "", "the URL forwards may go to: https, a DNS name, an exact path or a prefix ending in /*")
	fs.StringVar(&f.preset, "preset", "", "a preset name: "+presetNames())
	fs.StringVar(&f.config, "config", "", "the custom destination's settings as JSON, or @FILE")
	fs.StringVar(&f.signatureKeyFile, "signature-key-file", "", "file holding the request-signature HMAC key (with a signature rule in --config)")
	fs.StringVar(&f.clientCertFile, "client-cert", "", "PEM file of the mTLS client certificate")
	fs.StringVar(&f.clientKeyFile, "client-key", "", "PEM file of the mTLS client certificate's private key")
	_ = cmd.MarkFlagRequired("tenant")
	raw.bindVault(fs)
	raw.bindOperator(fs, operatorDefault)
	raw.bindEgress(fs)
	return cmd
}

// presetNames lists the presets' names.
func presetNames() string {
	var names []string
	for _, p := range forwarding.Presets() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

func newDestinationListCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --tenant ID",
		Short: "List the tenant's forwarding destinations (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				ds, err := a.svc.ListDestinations(cmd.Context(), a.cfg.actor(tenantID))
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(ds)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tURL\tPRESET\tSECRETS\tCREATED")
				for _, d := range ds {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.URL, dash(d.Preset), secretsOf(d), d.CreatedAt.Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("tenant")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	return cmd
}

// dash is s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// secretsOf names the secrets a destination holds (sealed), or "-".
func secretsOf(d vault.ForwardDestination) string {
	var s []string
	if d.HasSignatureKey {
		s = append(s, "signature-key")
	}
	if d.HasClientCert {
		s = append(s, "client-cert")
	}
	return dash(strings.Join(s, ","))
}

func newDestinationRemoveCmd() *cobra.Command {
	var raw rawConfig
	var tenant string
	cmd := &cobra.Command{
		Use:   "remove --tenant ID DESTINATION_ID",
		Short: "Remove a destination: no forward may use it any more and its secrets are destroyed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenantID, err := parseTenantID(tenant)
			if err != nil {
				return err
			}
			return withApp(cmd.Context(), &raw, func(a *app) error {
				err := a.svc.DeleteDestination(cmd.Context(), a.cfg.actor(tenantID), args[0])
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "removed forwarding destination %s\n", args[0])
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	_ = cmd.MarkFlagRequired("tenant")
	raw.bindVault(cmd.Flags())
	raw.bindOperator(cmd.Flags(), operatorDefault)
	return cmd
}

func newPresetsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "presets",
		Short: "List the destination presets and their field maps (as GET /forwarding/presets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(forwarding.Presets())
		},
	}
}
