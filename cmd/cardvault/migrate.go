package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/migrations"
)

func newMigrateCmd() *cobra.Command {
	var raw rawConfig
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations (safe to run from several replicas at once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if raw.databaseURL == "" {
				return errNoDatabase()
			}
			if err := migrate(cmd.Context(), raw.databaseURL); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "database schema is up to date")
			return nil
		},
	}
	raw.bindDatabase(cmd.Flags())
	return cmd
}

// migrate applies every pending migration to the database at url.
func migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer conn.Close(ctx)
	return migrations.Migrate(ctx, conn)
}
