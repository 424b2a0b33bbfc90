package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestGenericPlansProbeIndexesWhenMadeOnEmptyTables: the generic plans the
// group commits keep (genericplans.go) are made once per connection, and a
// new vault makes them while its tables are empty, as `cardvault migrate`
// leaves them (never analysed). Each must still look up its rows through
// an index, by the keys of the batch's rows, never read a whole table or
// index: a plan made on an empty tokens table scanned it at every batch
// until autovacuum next analysed it.
func TestGenericPlansProbeIndexesWhenMadeOnEmptyTables(t *testing.T) {
	ctx := context.Background()
	url, cleanup, err := vaulttest.NewDatabase(ctx, "plans")
	require.NoError(t, err)
	t.Cleanup(cleanup)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(ctx) })
	whole, err := postgres.WholeReads(ctx, conn)
	require.NoError(t, err)
	assert.Empty(t, whole, "scans of a whole table or index, by statement")
}
