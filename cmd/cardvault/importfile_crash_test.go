//go:build linux

package main

// A file import whose vault process dies by SIGKILL mid-file is resumed by
// another process from the last committed row.

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// crashRows is how many rows the killed import's file holds: enough that
// the process is killed after its first committed batch and before its last.
const crashRows = 30000

// bulkStripeCSV returns a stripe-csv of n generated test numbers, card ids
// card_00001…
func bulkStripeCSV(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	w := csv.NewWriter(&b)
	require.NoError(t, w.Write([]string{"id", "card.id", "card.number", "card.exp_month", "card.exp_year"}))
	for i := 1; i <= n; i++ {
		require.NoError(t, w.Write([]string{fmt.Sprintf("cus_%05d", i), fmt.Sprintf("card_%05d", i),
			vaulttest.LuhnNumber("424242", 16, i), "12", "2031"}))
	}
	w.Flush()
	return b.String()
}

// TestAFileImportResumesAfterItsProcessIsKilled stores a 30,000-row file
// import, lets a `cardvault serve` child run it until some batches are
// committed, kills it with SIGKILL, and starts another process, which takes
// the job once the dead one's lease runs out (VAULT_FILE_IMPORT_LEASE_TTL)
// and resumes after the last committed row: every row is imported exactly
// once, the counts equal the ledger, the mapping is complete and the stored
// ciphertext is deleted.
func TestAFileImportResumesAfterItsProcessIsKilled(t *testing.T) {
	bin := buildVault(t)
	kek, kekURI := vaulttest.KEK(t)
	db := migratedDatabase(t)
	svc := vaulttest.NewService(t, db, vaulttest.Options{KEK: kek})
	tenant, _ := vaulttest.Tenant(t, svc)
	pool := vaulttest.Pool(t, db)
	ctx := context.Background()
	a := vault.Operator(tenant)
	key, err := svc.CreatePGPKey(ctx, a)
	require.NoError(t, err)
	file := encryptTo(t, key.PublicKey, bulkStripeCSV(t, crashRows))
	job, err := svc.CreateFileImport(ctx, a, vault.CreateFileImportInput{Format: "stripe-csv", File: bytes.NewReader(file)})
	require.NoError(t, err)
	env := []string{"VAULT_DATABASE_URL=" + db, "VAULT_KEK_URI=" + kekURI, "VAULT_FILE_IMPORT_LEASE_TTL=2s"}

	first := startChildVault(t, bin, env...)
	logOnFailure(t, first)
	find := func() vault.ImportJob {
		j, err := svc.FindImport(ctx, job.ID)
		require.NoError(t, err)
		return j
	}
	waitFor(t, 60*time.Second, "a committed batch", func() bool { return find().RowsDone > 0 })
	require.NoError(t, first.Signal(syscall.SIGKILL))
	waitExit(t, first, 10*time.Second)
	killed := find()
	require.Equal(t, vault.ImportRunning, killed.Status)
	require.Less(t, killed.RowsDone, int64(crashRows), "the process must die mid-file for the test to prove a resume")
	var lines int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM import_file_rows WHERE job_id = $1`, job.ID).Scan(&lines))
	require.Equal(t, killed.RowsDone, lines, "the resume point is the last committed row")
	require.Equal(t, killed.RowsDone, killed.Successes, "the counts are committed with the rows")

	t.Logf("killed after row %d of %d", killed.RowsDone, crashRows)
	second := startChildVault(t, bin, env...)
	logOnFailure(t, second)
	// Under the default lease (a minute) the second process could not take
	// the job before this deadline.
	waitFor(t, 50*time.Second, "the import to end", func() bool { return find().Ended() })
	end := find()
	require.Equal(t, vault.ImportFinished, end.Status, end.FailureReason)
	assert.EqualValues(t, crashRows, end.Total)
	assert.EqualValues(t, crashRows, end.RowsDone)
	assert.EqualValues(t, crashRows, end.Successes)
	assert.Zero(t, end.Failures)

	var tokens, keys, created, chunks int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT business_key) FROM tokens
		WHERE tenant_id = $1 AND business_key LIKE 'card\_%'`, tenant).Scan(&tokens, &keys))
	assert.EqualValues(t, crashRows, tokens, "one token per row")
	assert.EqualValues(t, crashRows, keys, "no row imported twice")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'created') FROM import_file_rows
		WHERE job_id = $1`, job.ID).Scan(&lines, &created))
	assert.EqualValues(t, crashRows, lines, "one ledger line per row")
	assert.EqualValues(t, end.Successes, created, "the counts equal the ledger")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM import_file_chunks WHERE job_id = $1`, job.ID).Scan(&chunks))
	assert.Zero(t, chunks, "the stored ciphertext is deleted when the job ends")

	seen := map[uuid.UUID]bool{}
	var rows int64
	require.NoError(t, svc.ImportMapping(ctx, a, job.ID, func(l vault.MappingLine) error {
		rows++
		assert.Equal(t, fmt.Sprintf("card_%05d", l.Row), l.OldID)
		assert.Equal(t, vault.FileRowCreated, l.Status, "row %d", l.Row)
		assert.False(t, seen[l.TokenID], "row %d maps to a token another row has", l.Row)
		seen[l.TokenID] = true
		return nil
	}))
	assert.EqualValues(t, crashRows, rows, "the mapping names every row")
	assert.NotContains(t, second.LogTail(1<<20), vaulttest.LuhnNumber("424242", 16, 1), "a card number reached the log")
}
