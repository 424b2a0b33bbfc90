package vault

import (
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The export scopes. exports:write starts and aborts export jobs, which
// send cards out of the vault; it implies exports:read, which reads the
// jobs, their ledgers and mappings.
const (
	ScopeExportsWrite Scope = "exports:write"
	ScopeExportsRead  Scope = "exports:read"
)

// ExportStatus is where an export job is: running, then finished, aborted
// or failed.
type ExportStatus string

// The export job statuses.
const (
	ExportRunning  ExportStatus = "running"
	ExportFinished ExportStatus = "finished"
	ExportAborted  ExportStatus = "aborted"
	ExportFailed   ExportStatus = "failed"
)

// The audited export job actions. Each card sent is audited as
// ActionTokenExport with the job id, committed before it is sent.
const (
	ActionExportCreate Action = "export.create"
	ActionExportAbort  Action = "export.abort"
	ActionExportFinish Action = "export.finish"
	ActionExportFail   Action = "export.fail"
)

// The export job webhook events.
const (
	EventExportFinished EventType = "export.finished"
	EventExportFailed   EventType = "export.failed"
	EventExportAborted  EventType = "export.aborted"
)

// Export job limits.
const (
	DefaultExportRate = 20.0   // sends per second of one job, across every process
	MaxExportRate     = 1000.0 // the highest rate a job may ask for
	MaxExportHeaders  = 10     // headers a job may send along
)

// ExportReplacements are the card fields an export sends: never the CVC.
var ExportReplacements = []string{"card_number", "card_expiry", "cardholder_name"}

// ExportJob is a job that sends a tenant's selected cards, through the
// forwarding engine, to another vault's import endpoint and keeps the
// mapping of each token to the other vault's token id. It holds the
// headers it sends (the other vault's API key) only sealed, while it runs.
type ExportJob struct {
	ID            uuid.UUID
	TenantID      uuid.UUID
	DestinationID string
	URL           string
	Filter        ExportFilter
	RateLimit     float64
	Status        ExportStatus
	FailureReason string
	Total         int64 // tokens selected when the job was created
	Attempts      int64 // sends made
	Successes     int64
	Failures      int64 // tokens given up on
	CreatedAt     time.Time
	FinishedAt    *time.Time
	UpdatedAt     time.Time
}

// Ended reports whether the job is finished, aborted or failed.
func (j ExportJob) Ended() bool { return j.Status != ExportRunning }

// Pending returns how many tokens are still to be exported.
func (j ExportJob) Pending() int64 { return j.Total - j.Successes - j.Failures }

// ExportRecord is the export job as the API and webhooks show it.
type ExportRecord struct {
	ID            uuid.UUID      `json:"id"`
	Object        string         `json:"object"`
	Destination   string         `json:"destination"`
	URL           string         `json:"url"`
	Filter        exportFilter   `json:"filter"`
	RateLimit     float64        `json:"rate_limit"`
	Status        ExportStatus   `json:"status"`
	FailureReason *string        `json:"failure_reason"`
	Counts        exportCounters `json:"counts"`
	CreatedAt     string         `json:"created_at"`
	FinishedAt    *string        `json:"finished_at"`
}

type exportFilter struct {
	BusinessKeyPrefix *string `json:"business_key_prefix"`
	CreatedAfter      *string `json:"created_after"`
}

type exportCounters struct {
	Total     int64 `json:"total"`
	Attempts  int64 `json:"attempts"`
	Successes int64 `json:"successes"`
	Failures  int64 `json:"failures"`
	Pending   int64 `json:"pending"`
}

// Record returns the job's API and webhook form.
func (j ExportJob) Record() ExportRecord {
	r := ExportRecord{ID: j.ID, Object: "export", Destination: j.DestinationID, URL: j.URL, RateLimit: j.RateLimit,
		Status: j.Status, CreatedAt: Timestamp(j.CreatedAt), FinishedAt: optionalTimestamp(j.FinishedAt),
		Filter: exportFilter{CreatedAfter: optionalTimestamp(j.Filter.CreatedAfter)},
		Counts: exportCounters{Total: j.Total, Attempts: j.Attempts, Successes: j.Successes, Failures: j.Failures,
			Pending: j.Pending()}}
	if j.Filter.BusinessKeyPrefix != "" {
		r.Filter.BusinessKeyPrefix = &j.Filter.BusinessKeyPrefix
	}
	if j.FailureReason != "" {
		r.FailureReason = &j.FailureReason
	}
	return r
}

// CreateExportInput is what a merchant gives to start an export.
type CreateExportInput struct {
	// DestinationID names one of the tenant's forwarding destinations.
	DestinationID string
	// URL is where the cards go; "" for the destination's own URL (which
	// must then be exact, not a prefix).
	URL string
	// Filter selects the tokens; the zero filter selects all.
	Filter ExportFilter
	// Headers are sent with every card (the other vault's API key); they
	// are kept sealed while the job runs.
	Headers []ForwardHeader
	// RateLimit is the sends per second of the job, however many
	// processes send its cards; DefaultExportRate when 0.
	RateLimit float64
}

// Validate returns a KindBadRequest error for a missing destination, a rate
// outside 0–MaxExportRate or too many headers. It never quotes a header value.
func (in CreateExportInput) Validate() error {
	if strings.TrimSpace(in.DestinationID) == "" {
		return &Error{Kind: KindBadRequest, Code: CodeParameterMissing, Param: "destination", Message: "missing required param: destination"}
	}
	if in.RateLimit < 0 || in.RateLimit > MaxExportRate {
		return &Error{Kind: KindBadRequest, Code: CodeParameterInvalid, Param: "rate_limit", Message: "rate_limit must be from 0 (the default, 20) to 1000 sends per second"}
	}
	if len(in.Headers) > MaxExportHeaders {
		return &Error{Kind: KindBadRequest, Code: CodeParameterInvalid, Param: "headers", Message: "at most 10 headers"}
	}
	return nil
}

// ExportPage is one page of export jobs, newest first.
type ExportPage struct {
	Jobs    []ExportJob
	HasMore bool
}

// ExportItem is one line of an export's ledger: a token, where its export
// stands, and the token id the other vault gave it.
type ExportItem struct {
	Seq         int64
	TokenID     uuid.UUID
	BusinessKey string // "" when the token has none, or was deleted since
	Status      ItemStatus
	Attempts    int
	LastError   string
	RemoteID    string // "" until exported
	UpdatedAt   time.Time
}

// ExportMappingColumns name the columns of an export's mapping (CSV), in
// ExportItem.MappingRecord's order.
var ExportMappingColumns = []string{"token_id", "business_key", "remote_id", "status", "last_error"}

// MappingRecord returns it as a line of ExportMappingColumns: blanks for a
// business key, remote id or error it has none of. It holds no card data
// (last_error is the redacted reason).
func (it ExportItem) MappingRecord() []string {
	return []string{it.TokenID.String(), it.BusinessKey, it.RemoteID, string(it.Status), it.LastError}
}

// ExportItemPage is one page of an export's ledger, in token order.
type ExportItemPage struct {
	Items   []ExportItem
	HasMore bool
}

// ErrExportEnded (KindConflict) means the export job was aborted, failed or
// finished meanwhile, or the worker lost the item.
var ErrExportEnded = &Error{Kind: KindConflict, Code: CodeExportEnded, Message: "the export job has ended"}

// IsExportEnded reports whether err says the export job ended under a worker.
func IsExportEnded(err error) bool { return errors.Is(err, ErrExportEnded) }

// ExportSetup is what a worker needs to send a running job's cards: where,
// how the destination takes them, and the headers to send (which print as
// [REDACTED] only through their values' holders: never log them).
type ExportSetup struct {
	JobID       uuid.UUID
	TenantID    uuid.UUID
	URL         string
	RateLimit   float64
	Destination ForwardDestination
	Headers     []ForwardHeader
}

// ExportWork is one leased token of an export job to send.
type ExportWork struct {
	JobID    uuid.UUID
	TenantID uuid.UUID
	TokenID  uuid.UUID
	// BusinessKey is the token's business key, sent in the body's
	// metadata; "" when it has none.
	BusinessKey string
	Attempts    int // attempts made before this one
}

// ExportAttempt is what one send of an export item gave.
type ExportAttempt struct {
	Status   ItemStatus // succeeded, failed (given up), or pending (retry after RetryAfter)
	RemoteID string     // the other vault's token id, when succeeded
	Error    string     // the destination's status and error code; never card data
	// RetryAfter is how long a pending item waits before its next attempt.
	RetryAfter time.Duration
}
