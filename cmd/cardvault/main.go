// Command cardvault is the one binary of the cardvault card-data vault:
// serve, dev, migrate and the operator commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cardvault:", err)
		os.Exit(1)
	}
}

// newRootCmd returns the command tree; every subcommand parses its own
// configuration once and passes it down explicitly.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cardvault",
		Short:         "A self-hosted PCI card-data vault speaking Stripe's Vault and Forward contract",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newDevCmd(), newMigrateCmd(), newKEKCmd(), newTenantCmd(), newAPIKeyCmd(), newKeysCmd())
	root.AddCommand(newAuditCmd(), newImportCmd(), newForwardingCmd(), newBenchCmd())
	return root
}
