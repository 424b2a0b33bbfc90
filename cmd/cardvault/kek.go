package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/crypto"
)

func newKEKCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "kek", Short: "Manage local root KEK files (development and tests only)"}
	var out string
	create := &cobra.Command{
		Use:   "create --out FILE",
		Short: "Write a fresh local Tink keyset to use as VAULT_KEK_URI=local://FILE",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			if _, err := os.Stat(abs); err == nil {
				return actionf(nil, "%s exists and kek create never overwrites a key: choose another file, e.g. `cardvault kek create --out %s`",
					abs, filepath.Join(filepath.Dir(abs), "kek-2.json"))
			}
			if err := crypto.CreateLocalKEK(abs); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "local://"+abs)
			return nil
		},
	}
	create.Flags().StringVar(&out, "out", "", "file to write (must not exist)")
	_ = create.MarkFlagRequired("out")
	cmd.AddCommand(create)
	return cmd
}
