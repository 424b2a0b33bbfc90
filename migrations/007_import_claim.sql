-- Claiming import items in the order they are due without sorting every
-- pending item: import_items_due (job_id, next_attempt_at) made each claim
-- read and sort all of a job's pending items, so a claim cost grew with the
-- job (3.8 ms of PostgreSQL time per claim of 16 at 2,000 items, the
-- import's bottleneck). With seq in the index a claim reads a running job's
-- items in (next_attempt_at, seq) order and stops after the batch.
CREATE INDEX import_items_claim ON import_items (job_id, next_attempt_at, seq) WHERE status = 'pending';
DROP INDEX import_items_due;

-- Room on each page for the new versions an item's lease and outcome
-- updates write, so they stay on the item's page (HOT for the lease, whose
-- columns no index names) instead of moving it and growing every index.
ALTER TABLE import_items SET (fillfactor = 70);
