package postgres

import (
	"context"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// retentionBatch bounds how many rows one prune statement deletes, so that
// no statement holds locks or writes WAL for long, whatever the backlog.
const retentionBatch = 1000

// retentionChunkBatch bounds how many file chunks one prune statement
// deletes: a chunk holds up to fileChunkSize (1 MiB) of ciphertext, so a
// batch of retentionBatch would be a gigabyte.
const retentionChunkBatch = 16

// pruneJobRowsSQL returns the statement deleting up to $2 rows of table
// rows (keyed by job_id and key) whose job in table jobs ended before $1.
func pruneJobRowsSQL(jobs, rows, key string) string {
	return `
		DELETE FROM ` + rows + ` WHERE (job_id, ` + key + `) IN (
			SELECT r.job_id, r.` + key + ` FROM ` + jobs + ` j JOIN ` + rows + ` r ON r.job_id = j.id
			WHERE j.status IN ('finished', 'aborted', 'failed') AND j.updated_at < $1
			LIMIT $2)`
}

// Finished rows past their retention, deleted child rows first so that no
// cascade is unbounded. Each statement takes $1 the cutoff and $2 the
// batch size. Rows still in flight (webhook events neither delivered nor
// given up, import jobs preparing or running, export jobs running, key
// jobs pending or running) never match.
var (
	pruneWebhookDeliveriesSQL = `
		DELETE FROM webhook_deliveries WHERE id IN (
			SELECT d.id FROM webhook_events e JOIN webhook_deliveries d ON d.event_id = e.id
			WHERE e.created_at < $1 AND (e.delivered_at IS NOT NULL OR e.given_up_at IS NOT NULL)
			LIMIT $2)`
	pruneWebhookEventsSQL = `
		DELETE FROM webhook_events WHERE id IN (
			SELECT id FROM webhook_events
			WHERE created_at < $1 AND (delivered_at IS NOT NULL OR given_up_at IS NOT NULL)
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`
	pruneImportItemsSQL = pruneJobRowsSQL("import_jobs", "import_items", "payment_method")
	// A file job's ledger has a row per row of the file (a million for a
	// million-card file): deleted here in batches, never by the cascade.
	pruneImportFileRowsSQL = pruneJobRowsSQL("import_jobs", "import_file_rows", "row_number")
	// Ending a job deletes its chunks; a job aborted by a tenant's shred
	// keeps them, until here.
	pruneImportFileChunksSQL = pruneJobRowsSQL("import_jobs", "import_file_chunks", "seq")
	pruneImportJobsSQL       = `
		DELETE FROM import_jobs WHERE id IN (
			SELECT id FROM import_jobs
			WHERE status IN ('finished', 'aborted', 'failed') AND updated_at < $1
			  AND NOT EXISTS (SELECT FROM import_items i WHERE i.job_id = import_jobs.id)
			  AND NOT EXISTS (SELECT FROM import_file_rows r WHERE r.job_id = import_jobs.id)
			  AND NOT EXISTS (SELECT FROM import_file_chunks c WHERE c.job_id = import_jobs.id)
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)`
	pruneExportItemsSQL = pruneJobRowsSQL("export_jobs", "export_items", "token_id")
	pruneExportJobsSQL  = `
		DELETE FROM export_jobs WHERE id IN (
			SELECT id FROM export_jobs
			WHERE status IN ('finished', 'aborted', 'failed') AND updated_at < $1
			  AND NOT EXISTS (SELECT FROM export_items i WHERE i.job_id = export_jobs.id)
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)`
	pruneKeyJobsSQL = `
		DELETE FROM key_jobs WHERE id IN (
			SELECT id FROM key_jobs
			WHERE status IN ('finished', 'failed') AND updated_at < $1
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)`
)

// PruneRetained deletes, in batches of at most retentionBatch rows per
// statement, the finished rows older than their retention in r (each zero
// one: its vault default): webhook events delivered or given up with their
// delivery attempts, finished, aborted or failed import jobs with their
// items, file rows and file chunks, finished, aborted or failed export
// jobs with their items, finished or failed key jobs. A pass that deleted
// anything writes one retention.prune audit row with the counts, the
// seconds it took and the rows per second. It returns what it deleted,
// also when it fails part-way with a domain error.
func (s *Service) PruneRetained(ctx context.Context, r vault.Retention) (vault.PruneCounts, error) {
	return s.pruneRetained(ctx, r, retentionBatch)
}

// pruneStep is one prune statement, run with its cutoff and batches of at
// most max rows (0: no cap but the pass's), adding what it deletes to n.
type pruneStep struct {
	sql    string
	cutoff time.Time
	max    int
	n      *int64
}

// pruneSteps returns the statements of a pass at now with the retentions
// of r, children before their parents, counting into c.
func pruneSteps(r vault.Retention, now time.Time, c *vault.PruneCounts) []pruneStep {
	cutoff := func(d, def time.Duration) time.Time {
		if d <= 0 {
			d = def
		}
		return now.Add(-d)
	}
	webhooks, imports := cutoff(r.Webhooks, vault.DefaultWebhookRetention), cutoff(r.Imports, vault.DefaultImportRetention)
	exports, keyJobs := cutoff(r.Exports, vault.DefaultExportRetention), cutoff(r.KeyJobs, vault.DefaultKeyJobRetention)
	return []pruneStep{
		{pruneWebhookDeliveriesSQL, webhooks, 0, &c.WebhookDeliveries},
		{pruneWebhookEventsSQL, webhooks, 0, &c.WebhookEvents},
		{pruneImportItemsSQL, imports, 0, &c.ImportItems},
		{pruneImportFileRowsSQL, imports, 0, &c.ImportFileRows},
		{pruneImportFileChunksSQL, imports, retentionChunkBatch, &c.ImportFileChunks},
		{pruneImportJobsSQL, imports, 0, &c.ImportJobs},
		{pruneExportItemsSQL, exports, 0, &c.ExportItems},
		{pruneExportJobsSQL, exports, 0, &c.ExportJobs},
		{pruneKeyJobsSQL, keyJobs, 0, &c.KeyJobs},
	}
}

// batchOf returns the batch size of st in a pass of batch rows.
func (st pruneStep) batchOf(batch int) int {
	if st.max > 0 && st.max < batch {
		return st.max
	}
	return batch
}

// pruneRetained is PruneRetained with batches of batch rows.
func (s *Service) pruneRetained(ctx context.Context, r vault.Retention, batch int) (vault.PruneCounts, error) {
	start := time.Now()
	var c vault.PruneCounts
	var err error
	for _, st := range pruneSteps(r, s.clock(), &c) {
		if err = s.pruneInBatches(ctx, st.sql, st.cutoff, st.batchOf(batch), st.n); err != nil {
			break
		}
	}
	if c.Total() == 0 {
		return c, err
	}
	if auditErr := s.insertAudit(ctx, s.db, s.pruneEvent(c, time.Since(start))); err == nil {
		err = dbError(auditErr, "audit event")
	}
	return c, err
}

// pruneInBatches runs a prune statement until it deletes fewer than batch
// rows, adding what it deleted to n.
func (s *Service) pruneInBatches(ctx context.Context, sql string, cutoff time.Time, batch int, n *int64) error {
	for {
		tag, err := s.db.Exec(ctx, sql, cutoff, batch)
		if err != nil {
			return dbError(err, "retention prune")
		}
		*n += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return nil
		}
	}
}

// pruneEvent is the audit row of a prune pass that deleted c in took.
func (s *Service) pruneEvent(c vault.PruneCounts, took time.Duration) vault.AuditEvent {
	secs := took.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = math.Round(float64(c.Total()) / secs)
	}
	ev := s.event(vault.Actor{}, vault.ActionRetentionPrune, uuid.Nil, map[string]any{
		"webhook_events": c.WebhookEvents, "webhook_deliveries": c.WebhookDeliveries,
		"import_jobs": c.ImportJobs, "import_items": c.ImportItems,
		"import_file_rows": c.ImportFileRows, "import_file_chunks": c.ImportFileChunks,
		"export_jobs": c.ExportJobs, "export_items": c.ExportItems, "key_jobs": c.KeyJobs,
		"seconds": math.Round(secs*1000) / 1000, "rows_per_second": rate})
	ev.ClientAddr = "retention-pruner"
	return ev
}
