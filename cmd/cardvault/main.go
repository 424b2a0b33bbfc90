// Command cardvault is the one binary of the cardvault card-data vault:
// serve, dev, migrate and the operator commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, newRootCmd(), os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs the command line and, when it fails, prints one line a
// person can act on to errOut; it returns the exit status.
func execute(ctx context.Context, root *cobra.Command, errOut io.Writer) int {
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(errOut, "cardvault:", errorLine(cmd, err))
	return 1
}

// newRootCmd returns the command tree; every subcommand parses its own
// configuration once and passes it down explicitly.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cardvault",
		Short:         "A self-hosted PCI card-data vault speaking Stripe's Vault and Forward contract",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			cmd.SetContext(withKEKNotice(cmd.Context(), newKEKNotice(cmd.ErrOrStderr())))
		},
	}
	root.AddCommand(newServeCmd(), newDevCmd(), newMigrateCmd(), newKEKCmd(), newTenantCmd(), newAPIKeyCmd(), newKeysCmd())
	root.AddCommand(newAuditCmd(), newImportCmd(), newForwardingCmd(), newBenchCmd(), newVersionCmd(), newPGPCmd(), newExportCmd())
	markRunErrors(root)
	return root
}
