package cardfile_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

var dbURL string

func TestMain(m *testing.M) { vaulttest.Main(m, "cardfile", &dbURL) }

// fileEnv is a tenant with an import key and a service over the test database.
type fileEnv struct {
	svc    *postgres.Service
	pool   *pgxpool.Pool
	tenant uuid.UUID
	pub    string // the armored import key
}

func newFileEnv(t *testing.T) fileEnv {
	t.Helper()
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	tenant, _ := vaulttest.Tenant(t, svc)
	k, err := svc.CreatePGPKey(context.Background(), vault.Operator(tenant))
	require.NoError(t, err)
	return fileEnv{svc: svc, pool: vaulttest.Pool(t, dbURL), tenant: tenant, pub: k.PublicKey}
}

// bulkCSV returns a stripe-csv of n public test numbers (card_00000…) with a
// Luhn-invalid number at row bad (none when 0), and the numbers.
func bulkCSV(t *testing.T, n, bad int) (string, []string) {
	t.Helper()
	var b strings.Builder
	w := csv.NewWriter(&b)
	require.NoError(t, w.Write([]string{"id", "card.id", "card.number", "card.exp_month", "card.exp_year"}))
	var numbers []string
	for i := 1; i <= n; i++ {
		number := vaulttest.LuhnNumber("424242", 16, i)
		if i == bad {
			number = number[:15] + string('0'+(number[15]-'0'+1)%10)
		}
		numbers = append(numbers, number)
		require.NoError(t, w.Write([]string{fmt.Sprintf("cus_%05d", i), fmt.Sprintf("card_%05d", i), number, "12", "2031"}))
	}
	w.Flush()
	return b.String(), numbers
}

// encrypt returns clear encrypted to the armored key pub.
func encrypt(t *testing.T, pub, clear string) []byte {
	t.Helper()
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(pub))
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := openpgp.Encrypt(&buf, ring, nil, nil, nil)
	require.NoError(t, err)
	_, err = w.Write([]byte(clear))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// create stores file as a stripe-csv file import job.
func (e fileEnv) create(t *testing.T, file []byte) vault.ImportJob {
	t.Helper()
	job, err := e.svc.CreateFileImport(context.Background(), vault.Operator(e.tenant),
		vault.CreateFileImportInput{Format: "stripe-csv", File: bytes.NewReader(file)})
	require.NoError(t, err)
	return job
}

// worker returns a worker of owner writing batches of rows rows over q,
// depth at once (the default when 0).
func worker(t *testing.T, q vault.FileImportQueue, owner string, rows, depth int, after func(uuid.UUID, int64)) *cardfile.Worker {
	t.Helper()
	w, err := cardfile.NewWorker(cardfile.WorkerConfig{Queue: q, Owner: owner, BatchRows: rows, Depth: depth, Poll: 20 * time.Millisecond,
		LeaseTTL: 3 * time.Second, Logger: slog.New(slog.DiscardHandler), AfterBatch: after})
	require.NoError(t, err)
	return w
}

// runUntilEnded runs w on job until the job has ended, within a deadline.
func (e fileEnv) runUntilEnded(t *testing.T, w *cardfile.Worker, id uuid.UUID) vault.ImportJob {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.RunJob(ctx, id) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j, err := e.svc.FindImport(context.Background(), id)
		require.NoError(t, err)
		if j.Ended() {
			return j
		}
		require.True(t, time.Now().Before(deadline), "the job ends within a minute: %+v", j)
		time.Sleep(20 * time.Millisecond) // a poll: the condition is checked, not timed
	}
}

// assertExactlyOnce checks that every card of the file has exactly one
// token and one ledger line, and that the counts agree.
func (e fileEnv) assertExactlyOnce(t *testing.T, job vault.ImportJob, numbers []string, bad int) {
	t.Helper()
	ctx := context.Background()
	var tokens, distinct, lines, okLines int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT business_key) FROM tokens WHERE tenant_id = $1`,
		e.tenant).Scan(&tokens, &distinct))
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'created') FROM import_file_rows
		WHERE job_id = $1`, job.ID).Scan(&lines, &okLines))
	good := int64(len(numbers))
	if bad > 0 {
		good--
	}
	assert.Equal(t, good, tokens, "one token per good row")
	assert.Equal(t, good, distinct, "no row imported twice")
	assert.Equal(t, int64(len(numbers)), lines, "one ledger line per row")
	assert.Equal(t, good, okLines)
	assert.Equal(t, vault.ImportFinished, job.Status, job.FailureReason)
	assert.Equal(t, int64(len(numbers)), job.Total)
	assert.Equal(t, good, job.Successes)
	assert.Equal(t, int64(len(numbers))-good, job.Failures)
	assert.Equal(t, int64(len(numbers)), job.RowsDone)
	var chunks int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM import_file_chunks WHERE job_id = $1`, job.ID).Scan(&chunks))
	assert.Zero(t, chunks, "the encrypted file is deleted when the job ends")
}

func TestAFileImportResumesAfterItsWorkerStopsMidBatch(t *testing.T) {
	e := newFileEnv(t)
	clear, numbers := bulkCSV(t, 300, 77)
	job := e.create(t, encrypt(t, e.pub, clear))

	// The first worker is stopped while its third batch is being written:
	// that batch commits whole or not at all.
	ctx, cancel := context.WithCancel(context.Background())
	stopper := &stopDuring{FileImportQueue: e.svc, batch: 3, cancel: cancel}
	first := worker(t, stopper, "first", 40, 1, nil)
	first.RunJob(ctx, job.ID)
	j, err := e.svc.FindImport(context.Background(), job.ID)
	require.NoError(t, err)
	require.Equal(t, vault.ImportRunning, j.Status)
	require.Contains(t, []int64{80, 120}, j.RowsDone, "stopped after two or three committed batches")
	var lines int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM import_file_rows WHERE job_id = $1`, job.ID).Scan(&lines))
	require.Equal(t, j.RowsDone, lines, "the resume point is the last committed row")

	// Another worker (another replica) resumes from there.
	j = e.runUntilEnded(t, worker(t, e.svc, "second", 40, 0, nil), job.ID)
	e.assertExactlyOnce(t, j, numbers, 77)
	page, err := e.svc.ListImportItems(context.Background(), vault.Operator(e.tenant), job.ID, vault.ItemFailed, 10, 0)
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	assert.Equal(t, int64(77), page.Items[0].Seq, "the ledger names the failed row")
	assert.Contains(t, page.Items[0].LastError, "incorrect_number")
	assert.NotContains(t, page.Items[0].LastError, numbers[76][:12], "never the number")
}

// stopDuring cancels the worker's context while its batch-th batch is
// being written.
type stopDuring struct {
	vault.FileImportQueue
	batch  int
	n      atomic.Int32
	cancel context.CancelFunc
}

func (s *stopDuring) ImportFileRows(ctx context.Context, owner string, w vault.FileImportWork, rows []vault.FileRow, ttl time.Duration) (vault.FileRowCounts, error) {
	if int(s.n.Add(1)) == s.batch {
		go func() { time.Sleep(time.Millisecond); s.cancel() }() // mid-batch, wherever the write is then
	}
	return s.FileImportQueue.ImportFileRows(ctx, owner, w, rows, ttl)
}

func TestTwoWorkersNeverImportARowTwiceEvenWhenALeaseIsTakenOver(t *testing.T) {
	e := newFileEnv(t)
	clear, numbers := bulkCSV(t, 200, 0)
	job := e.create(t, encrypt(t, e.pub, clear))

	// Worker A stalls in its second batch; meanwhile its lease runs out (its
	// heartbeats no longer reach the database, so it cannot renew it) and
	// worker B takes the job over and finishes it. A's stalled batch, written
	// afterwards, must be refused.
	stall := &stallBatch{FileImportQueue: e.svc, at: 2, held: make(chan struct{}), release: make(chan struct{})}
	a := worker(t, stall, "replica-a", 25, 0, nil)
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { defer close(doneA); a.RunJob(ctxA, job.ID) }()
	<-stall.held
	_, err := e.pool.Exec(context.Background(), `UPDATE import_jobs SET lease_owner = 'replica-a (lost)', lease_until = now() - interval '1 second' WHERE id = $1`, job.ID)
	require.NoError(t, err)

	var bRan atomic.Bool
	b := worker(t, e.svc, "replica-b", 25, 0, func(uuid.UUID, int64) { bRan.Store(true) })
	j := e.runUntilEnded(t, b, job.ID)
	require.True(t, bRan.Load(), "replica B wrote batches")
	close(stall.release)
	err = <-stall.err
	assert.True(t, vault.IsImportEnded(err), "the stalled batch is refused: %v", err)
	cancelA()
	<-doneA
	e.assertExactlyOnce(t, j, numbers, 0)
}

// stallBatch holds the at-th batch until release, then writes it with a
// fresh context (as a worker that stalled, not one that stopped), and
// reports its error on err.
type stallBatch struct {
	vault.FileImportQueue
	at      int
	n       atomic.Int32
	once    sync.Once
	held    chan struct{}
	release chan struct{}
	err     chan error
}

func (s *stallBatch) ImportFileRows(ctx context.Context, owner string, w vault.FileImportWork, rows []vault.FileRow, ttl time.Duration) (vault.FileRowCounts, error) {
	if int(s.n.Add(1)) != s.at {
		return s.FileImportQueue.ImportFileRows(ctx, owner, w, rows, ttl)
	}
	s.err = make(chan error, 1)
	close(s.held)
	<-s.release
	c, err := s.FileImportQueue.ImportFileRows(context.Background(), owner, w, rows, ttl)
	s.err <- err
	return c, err
}

func TestAFileThatCannotBeReadFailsTheJobBeforeAnyRow(t *testing.T) {
	e := newFileEnv(t)
	clear, _ := bulkCSV(t, 120, 0)
	good := encrypt(t, e.pub, clear)
	corrupt := append([]byte(nil), good...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+16; i++ {
		corrupt[i] ^= 0xff
	}
	other := newFileEnv(t)
	tests := []struct {
		name string
		file []byte
		code string
	}{
		{"truncated", good[:len(good)*2/3], vault.CodePGPIntegrity},
		{"corrupt", corrupt, vault.CodePGPIntegrity},
		{"another tenant's key", encrypt(t, other.pub, clear), vault.CodePGPWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := e.create(t, tt.file)
			j := e.runUntilEnded(t, worker(t, e.svc, "w", 10, 0, nil), job.ID)
			assert.Equal(t, vault.ImportFailed, j.Status)
			assert.True(t, strings.HasPrefix(j.FailureReason, tt.code+": "), j.FailureReason)
			assert.NotContains(t, j.FailureReason, "424242")
			assert.Zero(t, j.Successes+j.Failures, "nothing was imported")
			var tokens int
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM tokens WHERE tenant_id = $1`, e.tenant).Scan(&tokens))
			assert.Zero(t, tokens)
		})
	}
}
