// Package migrations holds cardvault's numbered SQL migrations, embedded in
// the binary and applied with github.com/jackc/tern/v2.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// versionTable is where tern records the applied version.
const versionTable = "schema_version"

func newMigrator(ctx context.Context, conn *pgx.Conn) (*migrate.Migrator, error) {
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	sub, err := fs.Sub(files, ".")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return nil, fmt.Errorf("migrations: load: %w", err)
	}
	return m, nil
}

// Migrate applies every pending migration over conn. tern holds a PostgreSQL
// advisory lock while it runs, so replicas may call it at once. It returns an
// error naming the failing migration.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return err
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrations: apply: %w", err)
	}
	return nil
}

// Check returns nil when the schema over conn is at the latest version, and
// an error telling the operator to run `cardvault migrate` otherwise.
func Check(ctx context.Context, conn *pgx.Conn) error {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return err
	}
	have, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrations: read version: %w", err)
	}
	want := int32(len(m.Migrations))
	switch {
	case have < want:
		return fmt.Errorf("database schema is at version %d but this binary needs %d: run `cardvault migrate` first", have, want)
	case have > want:
		return fmt.Errorf("database schema is at version %d, newer than this binary knows (%d): upgrade cardvault", have, want)
	}
	return nil
}

// MigrateTo applies the pending migrations over conn up to and including
// version (for upgrade tests). It returns an error naming the failing
// migration.
func MigrateTo(ctx context.Context, conn *pgx.Conn, version int32) error {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return err
	}
	if err := m.MigrateTo(ctx, version); err != nil {
		return fmt.Errorf("migrations: apply: %w", err)
	}
	return nil
}
