package vault

import (
	"errors"
	"regexp"
	"time"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/google/uuid"
)

// ImportStatus is where an import job is in its life:
// preparing → running → finished, or aborted, or failed.
type ImportStatus string

// The import job statuses.
const (
	ImportPreparing ImportStatus = "preparing"
	ImportRunning   ImportStatus = "running"
	ImportFinished  ImportStatus = "finished"
	ImportAborted   ImportStatus = "aborted"
	ImportFailed    ImportStatus = "failed"
)

// ProviderStripe is the one import provider.
const ProviderStripe = "stripe"

// The audited import actions.
const (
	ActionImportCreate Action = "import.create"
	ActionImportAbort  Action = "import.abort"
	ActionImportFinish Action = "import.finish"
	ActionImportFail   Action = "import.fail"
)

// ImportJob is a job that copies a provider's card payment methods into the
// vault. It never holds the provider key itself, only a hint of it.
type ImportJob struct {
	ID            uuid.UUID
	TenantID      uuid.UUID
	Provider      string
	Status        ImportStatus
	FailureReason string
	// ProviderKeyHint names the provider key without revealing it:
	// "sk_test_…4242".
	ProviderKeyHint string
	Total           int64 // payment methods found, skipped ones included
	Attempts        int64 // forward attempts made
	Successes       int64
	Failures        int64 // payment methods given up on
	Skipped         int64 // payment methods that cannot be imported (Link, non-card)
	// FileFormat, FileSize and RowsDone describe a file import (provider
	// file): the clear layout, the encrypted file's size and the last row
	// committed.
	FileFormat string
	FileSize   int64
	RowsDone   int64
	CreatedAt  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	UpdatedAt  time.Time
}

// Active reports whether the job is preparing or running.
func (j ImportJob) Active() bool { return j.Status == ImportPreparing || j.Status == ImportRunning }

// Ended reports whether the job is finished, aborted or failed.
func (j ImportJob) Ended() bool { return !j.Active() }

// Pending returns how many payment methods are still to be imported.
func (j ImportJob) Pending() int64 { return j.Total - j.Successes - j.Failures - j.Skipped }

// ImportRecord is the import job as the API and webhooks show it.
type ImportRecord struct {
	ID            uuid.UUID      `json:"id"`
	Object        string         `json:"object"`
	Provider      string         `json:"provider"`
	Status        ImportStatus   `json:"status"`
	FailureReason *string        `json:"failure_reason"`
	Stripe        *importStripe  `json:"stripe"`
	File          *importFile    `json:"file,omitempty"`
	Counts        importCounters `json:"counts"`
	CreatedAt     string         `json:"created_at"`
	StartedAt     *string        `json:"started_at"`
	FinishedAt    *string        `json:"finished_at"`
}

// Record returns the job's API and webhook form.
func (j ImportJob) Record() ImportRecord {
	r := ImportRecord{
		ID: j.ID, Object: "import", Provider: j.Provider, Status: j.Status,
		Counts: importCounters{Total: j.Total, Attempts: j.Attempts, Successes: j.Successes,
			Failures: j.Failures, Skipped: j.Skipped},
		CreatedAt: Timestamp(j.CreatedAt), StartedAt: optionalTimestamp(j.StartedAt),
		FinishedAt: optionalTimestamp(j.FinishedAt),
	}
	if j.Provider == ProviderFile {
		r.File = &importFile{Format: j.FileFormat, Size: j.FileSize, RowsDone: j.RowsDone}
	} else {
		r.Stripe = &importStripe{APIKey: j.ProviderKeyHint}
	}
	if j.FailureReason != "" {
		r.FailureReason = &j.FailureReason
	}
	return r
}

// Timestamp formats t as the API shows times: RFC 3339, UTC, seconds.
func Timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// CreateImportInput is what a merchant gives to start an import.
type CreateImportInput struct {
	Provider     string
	StripeAPIKey card.Secret
}

// Validate returns a KindInvalid error for an unknown provider or a value
// that is not a Stripe secret or restricted key. It never quotes the key.
func (in CreateImportInput) Validate() error {
	if in.Provider != ProviderStripe {
		return InvalidParam(CodeInvalidProvider, "provider", `provider must be "stripe"`)
	}
	if !stripeKeyPattern.MatchString(in.StripeAPIKey.Reveal()) {
		return InvalidParam(CodeInvalidAPIKey, "stripe.api_key",
			"stripe.api_key must be a Stripe secret key (sk_live_…, sk_test_…) or restricted key (rk_…)")
	}
	return nil
}

// ImportPage is one page of import jobs, newest first.
type ImportPage struct {
	Jobs    []ImportJob
	HasMore bool
}

// IsImportEnded reports whether err says the import job ended under a worker.
func IsImportEnded(err error) bool { return errors.Is(err, ErrImportEnded) }

type importStripe struct {
	APIKey string `json:"api_key"`
}

type importCounters struct {
	Total     int64 `json:"total"`
	Attempts  int64 `json:"attempts"`
	Successes int64 `json:"successes"`
	Failures  int64 `json:"failures"`
	Skipped   int64 `json:"skipped"`
}

func optionalTimestamp(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := Timestamp(*t)
	return &s
}

// stripeKeyPattern is the shape of a Stripe secret or restricted key.
var stripeKeyPattern = regexp.MustCompile(`^(sk|rk)_(test|live)_[0-9A-Za-z]{8,247}$`)

// ErrImportEnded (KindConflict) means the job was aborted, failed or finished meanwhile.
var ErrImportEnded = &Error{Kind: KindConflict, Code: CodeImportEnded, Message: "the import job has ended"}

// ImportCredentials are what a worker needs to drive a job: the provider key
// and the job's own vault API key. Both print as [REDACTED].
type ImportCredentials struct {
	JobID       uuid.UUID
	TenantID    uuid.UUID
	ProviderKey card.Secret
	ForwardKey  card.Secret
}

// Preparation is a job a worker has leased to enumerate the provider's
// payment methods, resuming after Cursor.
type Preparation struct {
	ImportCredentials
	Cursor string // last customer already enumerated; "" to start
}

// ItemStatus is where one payment method of an import is.
type ItemStatus string

// The item statuses.
const (
	ItemPending   ItemStatus = "pending"
	ItemSucceeded ItemStatus = "succeeded"
	ItemFailed    ItemStatus = "failed"
	ItemSkipped   ItemStatus = "skipped"
)

// FoundItem is a payment method found while preparing. SkipReason is set
// for one that cannot be imported (a Link payment method, say).
type FoundItem struct {
	PaymentMethod string
	Customer      string
	SkipReason    string
}

// ItemWork is one leased payment method to forward.
type ItemWork struct {
	JobID         uuid.UUID
	PaymentMethod string
	Attempts      int // attempts made before this one
	Throttled     int // of which Stripe rate-limited
}

// Attempt is what one forward of an item gave.
type Attempt struct {
	Status  ItemStatus // succeeded, failed (given up), or pending (retry after RetryAfter)
	TokenID uuid.UUID  // the token, when succeeded
	Error   string     // destination status and error code, or the provider error; never card data
	// RetryAfter is how long a pending item waits before its next attempt.
	RetryAfter time.Duration
	// Throttled marks an attempt Stripe rate-limited: it is counted, but
	// apart from the attempts that decide when an item is given up.
	Throttled bool
}

// ImportItem is one line of an import's ledger: a payment method, where its
// import stands, and the token it gave.
type ImportItem struct {
	Seq           int64
	PaymentMethod string
	Customer      string
	Status        ItemStatus
	Attempts      int
	LastError     string
	TokenID       uuid.UUID // uuid.Nil until imported
	UpdatedAt     time.Time
}

// ItemPage is one page of an import's ledger, in the order items were found.
type ItemPage struct {
	Items   []ImportItem
	HasMore bool
}
