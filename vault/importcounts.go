package vault

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// importCounts gathers the attempt counters of import jobs so that many
// recorded attempts update a job's row together. Every worker used to
// update the job's one row in its own transaction: they queued on that
// row's lock, one commit (and WAL flush) after another. Now the first
// recorder to find no flush running writes everything gathered so far in
// one statement and keeps writing while more arrives; the others return at
// once. The counters are derived data: endImport recomputes them from the
// items, so counts a crash loses between flushes are exact again when the
// job ends, and a flush never touches a job that has ended. The zero value
// is ready to use.
type importCounts struct {
	mu       sync.Mutex
	pending  map[uuid.UUID]countDelta
	flushing bool
}

// countDelta is what recorded attempts add to a job's counters.
type countDelta struct {
	attempts, successes, failures int64
}

// add gathers d for job and, unless another caller is already flushing,
// flushes everything gathered (including what arrives meanwhile) with
// flush. On a flush error the unwritten deltas are kept for the next flush
// and the error is returned.
func (c *importCounts) add(ctx context.Context, job uuid.UUID, d countDelta,
	flush func(context.Context, map[uuid.UUID]countDelta) error) error {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = make(map[uuid.UUID]countDelta)
	}
	c.pending[job] = c.pending[job].plus(d)
	if c.flushing {
		c.mu.Unlock()
		return nil
	}
	c.flushing = true
	defer func() { c.flushing = false; c.mu.Unlock() }()
	for len(c.pending) > 0 {
		batch := c.pending
		c.pending = make(map[uuid.UUID]countDelta)
		c.mu.Unlock()
		err := flush(ctx, batch)
		c.mu.Lock()
		if err != nil {
			for id, d := range batch {
				c.pending[id] = c.pending[id].plus(d)
			}
			return err
		}
	}
	return nil
}

func (d countDelta) plus(o countDelta) countDelta {
	return countDelta{d.attempts + o.attempts, d.successes + o.successes, d.failures + o.failures}
}

// flushImportCounts adds gathered deltas to the counters of jobs that are
// still preparing or running, in one statement.
func (s *Service) flushImportCounts(ctx context.Context, batch map[uuid.UUID]countDelta) error {
	ids := make([]uuid.UUID, 0, len(batch))
	var attempts, successes, failures []int64
	for id, d := range batch {
		ids = append(ids, id)
		attempts, successes, failures = append(attempts, d.attempts), append(successes, d.successes), append(failures, d.failures)
	}
	_, err := s.db.Exec(ctx, `
		UPDATE import_jobs j SET attempts = j.attempts + d.a, successes = j.successes + d.s,
		       failures = j.failures + d.f, updated_at = $5
		FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[]) AS d(id, a, s, f)
		WHERE j.id = d.id AND j.status IN ('preparing', 'running')`,
		ids, attempts, successes, failures, s.clock())
	return dbError(err, "import")
}

// recountImportSQL is the SET list that recomputes a job's ($1) attempt
// counters from its items, for endImport.
const recountImportSQL = `
	attempts = (SELECT coalesce(sum(i.attempts), 0) FROM import_items i WHERE i.job_id = $1),
	successes = (SELECT count(*) FROM import_items i WHERE i.job_id = $1 AND i.status = 'succeeded'),
	failures = (SELECT count(*) FROM import_items i WHERE i.job_id = $1 AND i.status = 'failed')`
