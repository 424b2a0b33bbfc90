package vault

import "time"

// ActionRetentionPrune records one pass of the retention prune (finished
// webhook events and their delivery attempts, finished import jobs and
// their ledgers, file rows and leftover file chunks, finished export jobs
// and their ledgers, finished key jobs); its detail holds the counts per table,
// the seconds it took and the rows per second. It has no tenant: it is on
// the system chain.
const ActionRetentionPrune Action = "retention.prune"

// Default retentions of what grows without end, used when none is
// configured.
const (
	// DefaultWebhookRetention: webhook events delivered or given up, with
	// their delivery attempts (VAULT_WEBHOOK_RETENTION).
	DefaultWebhookRetention = 30 * 24 * time.Hour
	// DefaultImportRetention: finished, aborted or failed import jobs with
	// their ledgers of items or file rows (VAULT_IMPORT_RETENTION).
	DefaultImportRetention = 90 * 24 * time.Hour
	// DefaultExportRetention: finished, aborted or failed export jobs with
	// their ledgers of items (VAULT_EXPORT_RETENTION).
	DefaultExportRetention = 90 * 24 * time.Hour
	// DefaultKeyJobRetention: finished or failed key jobs, re-encryptions
	// and re-fingerprints (VAULT_KEY_JOB_RETENTION).
	DefaultKeyJobRetention = 365 * 24 * time.Hour
)

// Retention says how long finished rows of each kind are kept; zero means
// the default.
type Retention struct {
	Webhooks, Imports, Exports, KeyJobs time.Duration
}

// PruneCounts is what one retention prune deleted.
type PruneCounts struct {
	WebhookEvents, WebhookDeliveries int64
	ImportJobs, ImportItems          int64
	ImportFileRows, ImportFileChunks int64
	ExportJobs, ExportItems, KeyJobs int64
}

// Total returns the number of rows deleted.
func (c PruneCounts) Total() int64 {
	return c.WebhookEvents + c.WebhookDeliveries + c.ImportJobs + c.ImportItems + c.ImportFileRows +
		c.ImportFileChunks + c.ExportJobs + c.ExportItems + c.KeyJobs
}
