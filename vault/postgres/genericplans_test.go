package postgres_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
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
	for name, sql := range postgres.GroupCommittedStatements() {
		plan := genericPlan(t, conn, sql)
		assert.NotContains(t, plan, "Seq Scan", "%s:\n%s", name, plan)
		assert.Empty(t, unkeyedIndexScans(plan), "%s reads a whole index:\n%s", name, plan)
	}
}

// paramRE finds a statement's parameters.
var paramRE = regexp.MustCompile(`\$(\d+)`)

// genericPlan returns the plan conn makes for sql after genericPlansSQL,
// in a transaction it rolls back.
func genericPlan(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	ctx := context.Background()
	n := 0
	for _, m := range paramRE.FindAllStringSubmatch(sql, -1) {
		k, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		n = max(n, k)
	}
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, postgres.GenericPlansSQL)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "PREPARE plan_test AS "+sql)
	require.NoError(t, err)
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE plan_test("+strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")+")")
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "DEALLOCATE plan_test") // prepared statements outlive transactions
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// unkeyedIndexScans returns the index scans of plan that have no Index
// Cond: a walk of the whole index.
func unkeyedIndexScans(plan string) []string {
	lines := strings.Split(plan, "\n")
	var out []string
	for i, l := range lines {
		if !strings.Contains(l, "Index Scan") && !strings.Contains(l, "Index Only Scan") {
			continue
		}
		if i+1 >= len(lines) || !strings.Contains(lines[i+1], "Index Cond") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}
