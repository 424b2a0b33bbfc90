package postgres

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// importCounts writes the attempts that concurrent import forwarders record
// together (groupCommit): each item's outcome, the release of its lease and
// the job's attempt counters, for every attempt recorded while the previous
// batch was being written, in one statement and one commit. One UPDATE and
// one commit per item, plus a separate counter update, was where most of an
// import's PostgreSQL time went after the claim. A forwarder returns only
// once its attempt has committed, so an item is never left to look
// unattempted after its forward was answered (the lease is what keeps it
// from being forwarded again). The counters are exact; endImport still
// recomputes them from the items, for the attempts recorded while a job
// ends. The zero value is ready to use.
type importCounts struct {
	batch groupCommit[*recordedAttempt]
}

// recordedAttempt is one attempt waiting to be written, and whether the
// write found the item still leased to its owner.
type recordedAttempt struct {
	owner     string
	job       uuid.UUID
	pm        string
	status    vault.ItemStatus
	token     uuid.UUID // uuid.Nil unless succeeded
	err       string    // masked
	retryAt   time.Time
	throttled int
	written   bool
}

// maxAttemptWriteTries bounds the writes of one batch that PostgreSQL broke
// off to end a deadlock (two replicas counting on the same jobs in another
// order) or a serialization failure.
const maxAttemptWriteTries = 3

// writeAttempts writes a batch of attempts in one statement (see
// importCounts), retrying one that PostgreSQL rolled back to break a
// deadlock, and marks the attempts whose item was still leased to their
// owner as written.
func (s *Service) writeAttempts(ctx context.Context, batch []*recordedAttempt) error {
	var err error
	for range maxAttemptWriteTries {
		if err = s.writeAttemptsOnce(ctx, batch); !isDeadlock(err) {
			break
		}
	}
	return dbError(err, "import item")
}

// writeAttemptsSQL updates the batch's items ($1–$8, one element per
// attempt) that are still pending (stillPending) and leased to the
// attempt's owner, adds what was written to the counters of jobs still
// active (in job id order, so that concurrent writers lock the jobs in the
// same order) and returns the items written.
var writeAttemptsSQL = `
	WITH d AS (
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[],
		                     $7::timestamptz[], $8::int[]) AS d(job_id, pm, owner, status, token_id, err, next_at, throttled)),
	u AS (
		UPDATE import_items i SET attempts = i.attempts + 1, throttled = i.throttled + d.throttled, status = d.status,
		       token_id = NULLIF(d.token_id, '00000000-0000-0000-0000-000000000000'), last_error = d.err,
		       next_attempt_at = d.next_at, lease_owner = NULL, lease_until = NULL, updated_at = $9
		FROM d WHERE i.job_id = d.job_id AND i.payment_method = d.pm AND i.lease_owner = d.owner AND ` + stillPending("i") + `
		RETURNING i.job_id, i.payment_method, i.status),
	n AS (
		SELECT job_id, count(*) AS a, count(*) FILTER (WHERE status = 'succeeded') AS s,
		       count(*) FILTER (WHERE status = 'failed') AS f
		FROM u GROUP BY job_id ORDER BY job_id),
	c AS (
		UPDATE import_jobs j SET attempts = j.attempts + n.a, successes = j.successes + n.s, failures = j.failures + n.f,
		       updated_at = $9
		FROM n WHERE j.id = n.job_id AND ` + checkedOnly("j.status IN ('preparing', 'running')") + `)
	SELECT job_id, payment_method FROM u`

// writeAttemptsOnce runs writeAttemptsSQL for batch with its generic plan
// (inGenericTx). Its lookups probe the items' and jobs' keys whatever the
// statistics (stillPending, and the active job's status checkedOnly, so
// that import_jobs_active cannot serve it either); it was planned
// at each call, 0.28–0.41 ms a call (pg_stat_statements over a 10,000-card
// import, three alternating pairs: the statement's planning and execution
// 841–1,186 → 530–761 ms, PostgreSQL's CPU per card 0.323–0.468 →
// 0.308–0.374 ms).
func (s *Service) writeAttemptsOnce(ctx context.Context, batch []*recordedAttempt) error {
	n := len(batch)
	jobs, pms, owners, statuses := make([]uuid.UUID, n), make([]string, n), make([]string, n), make([]string, n)
	tokens, errs, next, throttled := make([]uuid.UUID, n), make([]string, n), make([]time.Time, n), make([]int32, n)
	for i, a := range batch {
		jobs[i], pms[i], owners[i], statuses[i] = a.job, a.pm, a.owner, string(a.status)
		tokens[i], errs[i], next[i], throttled[i] = a.token, a.err, a.retryAt, int32(a.throttled)
	}
	var written []itemKey
	err := s.inGenericTx(ctx, writeAttemptsSQL, []any{jobs, pms, owners, statuses, tokens, errs, next, throttled, s.clock()},
		func(rows pgx.Rows) error {
			var err error
			written, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (itemKey, error) {
				var k itemKey
				return k, r.Scan(&k.job, &k.pm)
			})
			return err
		})
	if err != nil {
		return err
	}
	markWritten(batch, written)
	return nil
}

// itemKey names an item.
type itemKey struct {
	job uuid.UUID
	pm  string
}

// markWritten marks the attempts of batch whose item is in written.
func markWritten(batch []*recordedAttempt, written []itemKey) {
	slices.SortFunc(written, compareItemKeys)
	for _, a := range batch {
		_, a.written = slices.BinarySearchFunc(written, itemKey{a.job, a.pm}, compareItemKeys)
	}
}

func compareItemKeys(a, b itemKey) int {
	if c := slices.Compare(a.job[:], b.job[:]); c != 0 {
		return c
	}
	return strings.Compare(a.pm, b.pm)
}

// recountImportSQL is the SET list that recomputes a job's ($1) attempt
// counters from its items, for endImport; a file import's counters are
// exact already (each batch adds its rows in the transaction that writes
// them) and are kept.
const recountImportSQL = `
	attempts = CASE WHEN provider = 'file' THEN attempts ELSE (SELECT coalesce(sum(i.attempts), 0) FROM import_items i WHERE i.job_id = $1) END,
	successes = CASE WHEN provider = 'file' THEN successes ELSE (SELECT count(*) FROM import_items i WHERE i.job_id = $1 AND i.status = 'succeeded') END,
	failures = CASE WHEN provider = 'file' THEN failures ELSE (SELECT count(*) FROM import_items i WHERE i.job_id = $1 AND i.status = 'failed') END`
