package vault

import (
	"context"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault/card"
)

// The role interfaces: each caller declares what it uses of the vault,
// and vault/postgres.Service implements them all.

// Tokens is what the merchant API needs of tokens: create (idempotent per business key), read masked, reveal and delete.
type Tokens interface {
	// Tokenize stores a card and returns its masked record and whether a new
	// token was created. With a business key it is idempotent within the
	// tenant: the same card returns the existing token; changed card data
	// replaces the stored card under the same token id and is audited as an
	// update (with the fingerprints before and after). Replacing the number
	// needs ScopeTokensUpdate (a KindForbidden error, audited, otherwise); a
	// replaced number or expiry is kept as a sealed version for the card
	// history retention. Concurrent first calls with one business key make exactly one
	// token. A new or changed token enqueues a token.created or token.updated
	// webhook event in the same transaction. It returns a KindInvalid error for
	// invalid card data or attributes.
	Tokenize(ctx context.Context, a Actor, in TokenizeInput) (Token, bool, error)
	// GetToken returns the masked record of the actor's tenant's token id once
	// the read's audit row has committed (the token found and the row written
	// in one statement and one commit with concurrent reads, see lookupBatch):
	// no record is returned unaudited. An unknown id and another tenant's id
	// both return the same KindNotFound error.
	GetToken(ctx context.Context, a Actor, id uuid.UUID) (Token, error)
	// ListTokens returns the actor's tenant's tokens newest first and audits the
	// listing. It returns KindBadRequest for a bad limit or an unknown
	// starting_after id.
	ListTokens(ctx context.Context, a Actor, p ListTokensParams) (TokenPage, error)
	// Detokenize returns the card behind the actor's tenant's token id and
	// audits the reveal with reason (and whether the CVC was revealed). The
	// CVC, if still held and within its TTL, is returned once and destroyed in
	// the same transaction, which rolls back if the card cannot be decrypted;
	// of concurrent reveals of one token only one receives it. It returns
	// KindNotFound for an unknown or foreign id and KindInvalid for a bad
	// reason.
	Detokenize(ctx context.Context, a Actor, id uuid.UUID, reason string) (Revealed, error)
	// DeleteToken deletes the actor's tenant's token id with its ciphertexts and
	// audits it, with a token.deleted webhook event carrying its last masked
	// record in the same transaction; the audit trail stays. It returns
	// KindNotFound for an unknown or foreign id.
	DeleteToken(ctx context.Context, a Actor, id uuid.UUID) error
	// ListTokenVersions returns the masked versions of the actor's tenant's
	// token id that updates replaced, newest first, and audits the read. It
	// returns KindNotFound for an unknown or foreign id.
	ListTokenVersions(ctx context.Context, a Actor, id uuid.UUID) ([]TokenVersion, error)
	// PruneTokenVersions deletes the replaced card versions older than
	// retention and returns how many it deleted, or a domain error.
	PruneTokenVersions(ctx context.Context, retention time.Duration) (int64, error)
}

// TokenSearch answers "do we already hold this card?" without revealing
// any card.
type TokenSearch interface {
	// SearchTokens returns the actor's tenant's masked tokens holding the
	// card number, newest first, after the token startingAfter when it is not
	// uuid.Nil, and audits the search with how many it found. The number is
	// fingerprinted with the tenant's fingerprint keyset and then dropped:
	// it is never stored, logged or audited. It returns a KindInvalid error
	// (param "number") for a value that is not a card number, KindBadRequest
	// for a limit outside 1–100 or an unknown starting_after id, and a domain
	// error when the keys or the database fail.
	SearchTokens(ctx context.Context, a Actor, number card.Secret, limit int, startingAfter uuid.UUID) (TokenPage, error)
}

// Imports is what the merchant API needs of import jobs.
type Imports interface {
	// CreateImport starts an import job for the actor's tenant: it seals the
	// provider key under the tenant data keyset, mints the job's own API key
	// (tokens:create and tokens:update only, revoked when the job ends) and audits. It returns a
	// KindInvalid error for a bad provider or key, and a KindConflict error
	// naming the job when one is already preparing or running.
	CreateImport(ctx context.Context, a Actor, in CreateImportInput) (ImportJob, error)
	// GetImport returns the actor's tenant's import job id. It returns a
	// KindNotFound error for an unknown id or another tenant's job.
	GetImport(ctx context.Context, a Actor, id uuid.UUID) (ImportJob, error)
	// ListImports returns the actor's tenant's import jobs newest first, after
	// the job startingAfter when it is not uuid.Nil. It returns a KindBadRequest
	// error for a limit outside 1–100; an unknown cursor gives an empty page.
	ListImports(ctx context.Context, a Actor, limit int, startingAfter uuid.UUID) (ImportPage, error)
	// ListImportItems returns the ledger of the actor's tenant's job id,
	// optionally only items in status, after the item seq startingAfter. It
	// returns KindNotFound for an unknown or foreign job, KindBadRequest for a
	// limit outside 1–100 and KindInvalid for an unknown status.
	ListImportItems(ctx context.Context, a Actor, id uuid.UUID, status ItemStatus, limit int, startingAfter int64) (ItemPage, error)
	// AbortImport stops the actor's tenant's job id: no new forward starts, its
	// credentials are wiped and its API key revoked. It returns KindNotFound for
	// an unknown or foreign id and KindConflict when the job has already ended.
	AbortImport(ctx context.Context, a Actor, id uuid.UUID) (ImportJob, error)
}

// Webhooks is what the merchant API needs of a tenant's webhook endpoint and its deliveries.
type Webhooks interface {
	// SetWebhook sets the actor's tenant's webhook URL and returns it with a new
	// signing secret ("whsec_…"), which is shown only here: every call, and so
	// every URL change, rotates the secret. The URL must be https to a DNS name
	// (loopback hosts, and http to them, only where the vault allows loopback
	// egress) without user information or a card number; it is stored with its
	// scheme lower-cased.
	// It returns a KindInvalid error for a bad URL and a domain error when the
	// keys or the database fail. The change is audited.
	SetWebhook(ctx context.Context, a Actor, rawURL string) (Webhook, string, error)
	// RotateWebhookSecret gives the actor's tenant's webhook a new signing
	// secret, shown only in this answer, while the previous one keeps
	// signing deliveries next to it for overlap (0 ends it at once; at most
	// MaxSecretOverlap). It returns KindInvalid for a bad overlap,
	// KindNotFound when there is no webhook, and a domain error when the
	// keys or the database fail. The rotation is audited.
	RotateWebhookSecret(ctx context.Context, a Actor, overlap time.Duration) (Webhook, string, error)
	// GetWebhook returns the actor's tenant's webhook (never its secret) and
	// audits the read. It returns a KindNotFound error when there is none.
	GetWebhook(ctx context.Context, a Actor) (Webhook, error)
	// DeleteWebhook deletes the actor's tenant's webhook with its secret, gives
	// up the events still waiting to go out, and audits it; the delivery record
	// stays. It returns a KindNotFound error when there is none.
	DeleteWebhook(ctx context.Context, a Actor) error
	// ListWebhookDeliveries returns the actor's tenant's delivery attempts
	// newest first, after the attempt id cursor when it is non-zero, and audits
	// the listing. It returns a KindBadRequest error for a limit outside 1–100
	// and a domain error when the database fails.
	ListWebhookDeliveries(ctx context.Context, a Actor, limit int, cursor int64) (WebhookDeliveryPage, error)
}

// Keys is what a key manager needs: the key report, rotation, re-encryption jobs and retirement.
type Keys interface {
	// KeyReport returns the key status of the given tenants (every tenant when
	// ids is empty) with the redacted root KEK URI, and audits the read for
	// each tenant as by (whose TenantID is replaced by each tenant's). It
	// returns a domain error when a tenant's keys cannot be read.
	KeyReport(ctx context.Context, by Actor, ids []uuid.UUID, kekURI string, cryptoperiod time.Duration) (KeyReport, error)
	// RotateDataKey rotates the tenant's data key in Tink's order: add a fresh
	// AES-256-GCM key (every replica can then decrypt with it), wait propagate
	// for every replica to reload the keyset, promote it to primary, and wait
	// again so that every replica encrypts with it when this returns. Old keys
	// keep decrypting. One rotation per tenant runs at a time, across replicas:
	// another answers a KindConflict error (rotation_in_progress) at once. It
	// returns the new key id, or a domain error.
	RotateDataKey(ctx context.Context, a Actor, propagate time.Duration) (uint32, error)
	// RotateFingerprintKey rotates the tenant's fingerprint (PRF) keyset in
	// Tink's order, waiting propagate after adding and after promoting, then
	// enqueues the refingerprint job that recomputes every token's
	// fingerprint under the new key (each token keeps its former one, so
	// lookups by a fingerprint taken before keep working). One rotation per
	// tenant at a time (KindConflict rotation_in_progress). It returns the
	// job, or a domain error.
	RotateFingerprintKey(ctx context.Context, a Actor, propagate time.Duration) (KeyJob, error)
	// StartReencrypt enqueues a re-encryption job for the actor's tenant and
	// audits it. When one is already pending or running it returns that one and
	// false. It returns a domain error when the database fails.
	StartReencrypt(ctx context.Context, a Actor) (KeyJob, bool, error)
	// GetKeyJob returns the tenant's key job id, or KindNotFound.
	GetKeyJob(ctx context.Context, tenantID, id uuid.UUID) (KeyJob, error)
	// RunOneKeyJob claims one claimable job (only job id when it is not
	// uuid.Nil) and runs it to the end. It reports whether it claimed one. A
	// job whose worker died is claimable once its lease runs out.
	RunOneKeyJob(ctx context.Context, owner string, id uuid.UUID) (bool, error)
	// RetireDataKey disables a data key that is not primary; with destroy it
	// then deletes the disabled key's material for good. It refuses, with a
	// KindConflict error saying how many tokens still need the key, while any
	// token is sealed with it; KindNotFound for an unknown key. The counts
	// first taken only word the common refusal: the guarantee is the disabling
	// transaction itself, which waits for the writers still sealing under the
	// key and refuses (KindConflict, key_in_use) when any row, committed
	// however late, still needs it (releaseSealingKey); writers that come after
	// it are refused by the database and seal again with the primary key.
	RetireDataKey(ctx context.Context, a Actor, keyID uint32, destroy bool) error
}

// AuditLog is what an auditor reads.
type AuditLog interface {
	// ListAuditEvents returns the actor's tenant's audit events newest first,
	// after the event id startingAfter when it is non-zero, and audits the
	// listing in the same transaction (after reading, so a page never shows its
	// own audit row). It returns a KindBadRequest error for a limit outside
	// 1–100, and a domain error when the database fails.
	ListAuditEvents(ctx context.Context, a Actor, limit int, startingAfter int64) (AuditPage, error)
}

// APIKeys authenticates requests and manages a tenant's keys.
type APIKeys interface {
	// Authenticate returns the actor a presented API key stands for, with the
	// request's id and client address. A missing, malformed, unknown, revoked,
	// expired or mismatching key returns a KindUnauthenticated error and is
	// audited; the presented key itself is never stored or logged. A valid key's
	// row is remembered for up to a second (apiKeyCacheTTL): a revocation made
	// through this Service applies at once, one made elsewhere within that
	// second. The key's last use is recorded at most once every
	// APIKeyUsageInterval, not per request.
	Authenticate(ctx context.Context, secret, requestID, clientAddr string) (Actor, error)
	// Require returns nil when the actor holds scope, and otherwise audits the
	// denial and returns a KindForbidden error naming the missing scope.
	Require(ctx context.Context, a Actor, scope Scope) error
	// CreateAPIKey makes an API key for tenantID with scopes and returns its
	// secret, shown once, with its record. It returns a KindNotFound error for an
	// unknown tenant and KindInvalid for no scopes.
	CreateAPIKey(ctx context.Context, tenantID uuid.UUID, scopes []Scope, description string) (string, APIKey, error)
	// IssueAPIKey is CreateAPIKey for in, whose key stops authenticating
	// (401, audited as expired) once in.ExpiresIn has passed when it is not
	// zero. It returns KindInvalid for a negative ExpiresIn.
	IssueAPIKey(ctx context.Context, in NewAPIKey) (string, APIKey, error)
	// RevokeAPIKey revokes the key with id at once and audits it. It returns a
	// KindNotFound error for an unknown or already revoked key.
	RevokeAPIKey(ctx context.Context, id uuid.UUID) (APIKey, error)
}

// Idempotency keeps Stripe-style Idempotency-Key semantics for POSTs.
type Idempotency interface {
	// BeginIdempotent claims r's key for the actor's tenant. It returns a claim
	// when the request should run (the key is new, expired, or held by a request
	// whose lock ran out), or the stored answer when it should be replayed.
	// Errors: KindBadRequest for a malformed key, KindIdempotency when the key
	// was used for a different request, KindConflict (idempotency_key_in_use)
	// while another request holds it, KindUnavailable when the database is down.
	BeginIdempotent(ctx context.Context, a Actor, r IdempotentRequest) (IdempotencyClaim, *StoredResponse, error)
	// HoldIdempotent renews c's lock every third of IdempotencyLockTimeout until
	// the returned stop is called, so that a long request keeps its key. Renewal
	// failures are logged; the lock then lapses as if the process had died.
	HoldIdempotent(ctx context.Context, c IdempotencyClaim) (stop func())
	// FinishIdempotent ends c by keeping res for replay, and reports whether it
	// was kept. An answer is not kept, and the key is released so that a retry
	// runs again, when it is a 5xx, larger than MaxStoredResponse, or holds
	// anything that looks like a card number (which no stored answer may). It
	// returns false without error when c's lock was taken over meanwhile, and a
	// domain error when the database fails.
	FinishIdempotent(ctx context.Context, c IdempotencyClaim, res StoredResponse) (bool, error)
	// ReleaseIdempotent ends c without keeping an answer: the key is free again
	// and a retry runs anew. It returns a domain error when the database fails.
	ReleaseIdempotent(ctx context.Context, c IdempotencyClaim) error
	// PruneIdempotencyKeys deletes every idempotency key whose 24 hours have
	// passed and returns how many it deleted, or a domain error when the
	// database fails.
	PruneIdempotencyKeys(ctx context.Context) (int64, error)
}

// Health answers readiness probes.
type Health interface {
	// Ready returns nil when the database answers and the root KEK can open a
	// tenant keyset; otherwise a KindUnavailable error.
	Ready(ctx context.Context) error
}

// ImportQueue is the import worker's side of import jobs: leases on preparations and items, the ledger, and completion.
type ImportQueue interface {
	// ClaimPreparation leases the oldest preparing job no live worker holds, for
	// owner, and returns it with its credentials; false when there is none. It
	// returns a domain error when the database fails or a credential does not
	// open.
	ClaimPreparation(ctx context.Context, owner string, ttl time.Duration) (Preparation, bool, error)
	// RecordFound stores one page of found payment methods as items (pending, or
	// skipped with their reason), advances the job's cursor to cursor and renews
	// owner's lease, in one transaction, so preparation resumes after the last
	// recorded page. Payment methods already recorded are left as they are. It
	// returns vault.ErrImportEnded (IsImportEnded) when the job ended or owner lost it.
	RecordFound(ctx context.Context, owner string, jobID uuid.UUID, items []FoundItem, cursor string, ttl time.Duration) error
	// FinishPreparation moves owner's preparing job to running. It returns
	// vault.ErrImportEnded (IsImportEnded) when the job ended or owner lost it.
	FinishPreparation(ctx context.Context, owner string, jobID uuid.UUID) error
	// ReleasePreparation gives back owner's lease on a preparing job, so that
	// it is retried at the next poll.
	ReleasePreparation(ctx context.Context, owner string, jobID uuid.UUID) error
	// ClaimItems leases up to n due pending items of running jobs for owner,
	// oldest due first, skipping items other workers hold. It returns a domain
	// error when the database fails.
	ClaimItems(ctx context.Context, owner string, n int, ttl time.Duration) ([]ItemWork, error)
	// Credentials returns an active job's credentials. It returns vault.ErrImportEnded
	// (see IsImportEnded) once the job has ended and its credentials are wiped.
	Credentials(ctx context.Context, jobID uuid.UUID) (ImportCredentials, error)
	// ReserveImportRequests reserves the active job's next n Stripe request
	// slots at rate requests a second, whichever process sends them, and
	// returns how long to wait before the first; the others follow at that
	// rate. It returns ErrImportEnded (IsImportEnded) once the job has
	// ended, and a domain error when the database fails.
	ReserveImportRequests(ctx context.Context, jobID uuid.UUID, n int, rate float64) (time.Duration, error)
	// RecordAttempt stores the outcome of owner's attempt on an item, releases
	// its lease and counts it on the job, in one statement and one commit
	// together with the attempts other forwarders record meanwhile
	// (importCounts); it returns once that commit is done. It returns
	// vault.ErrImportEnded (IsImportEnded) when owner no longer holds the item, and a
	// domain error when the database fails.
	RecordAttempt(ctx context.Context, owner string, w ItemWork, at Attempt) error
	// ReleaseItem gives back owner's lease on an item without counting an
	// attempt, so another worker may take it at once.
	ReleaseItem(ctx context.Context, owner string, w ItemWork) error
	// RenewImportLeases extends, by ttl, owner's leases on the jobs it
	// prepares and on held, the items it is working on: the worker's
	// heartbeat. A lease owner took without learning of it (a claim whose
	// answer was lost when the database failed over) is not renewed and runs
	// out, so another worker takes the item. It returns a domain error when
	// the database fails.
	RenewImportLeases(ctx context.Context, owner string, held []ItemWork, ttl time.Duration) error
	// ReleaseImportLeases gives back every import lease owner holds, for a
	// worker that stops cleanly.
	ReleaseImportLeases(ctx context.Context, owner string) error
	// CompleteImports ends as finished every running job that has no pending
	// item left, and returns them. It returns a domain error when the database
	// fails.
	CompleteImports(ctx context.Context) ([]ImportJob, error)
	// FailImport ends an active job as failed with reason, a text for the
	// merchant that must hold no secret. It returns vault.ErrImportEnded
	// (IsImportEnded) when the job had already ended.
	FailImport(ctx context.Context, jobID uuid.UUID, reason string) error
	// ActiveImports returns which of ids name jobs still preparing or
	// running (aborted, failed and finished ones are left out). It returns a
	// domain error when the database fails.
	ActiveImports(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error)
}

// WebhookOutbox is the webhook deliverer's side of the outbox: claim due events, record each attempt, give back unsent claims.
type WebhookOutbox interface {
	// ClaimWebhookEvents claims due events for owner until lease from now, as
	// c bounds them: events of tenants with a webhook, not delivered nor given
	// up, whose next attempt is due and which no live lease of another owner
	// holds (owner's own are lost claims: it takes them again), at most
	// c.PerTenant of each tenant, tenants taken in the order of their oldest
	// due event, sorted by seq. Rows are taken with FOR UPDATE SKIP LOCKED, so
	// concurrent deliverers (in this process or other replicas) never claim
	// the same attempt. It returns a domain error when the database fails; an
	// event whose secret or data does not open comes back with Err set.
	ClaimWebhookEvents(ctx context.Context, owner string, c EventClaim, lease time.Duration) ([]ClaimedEvent, error)
	// RecordWebhookAttempt records an attempt at ev by owner and moves the
	// event on: delivered, rescheduled at r.RetryAt, or given up (audited). The
	// attempt is recorded even when owner's lease was lost meanwhile; the event
	// is then left to the new owner. It returns a domain error when the
	// database fails.
	RecordWebhookAttempt(ctx context.Context, owner string, ev ClaimedEvent, r AttemptResult) error
	// ReleaseWebhookEvents gives up owner's leases on events it claimed but
	// did not attempt (the deliverer is stopping), so another deliverer can
	// send them at once. It returns a domain error when the database fails.
	ReleaseWebhookEvents(ctx context.Context, owner string, ids []string) error
	// WebhookEnqueued returns a channel that is closed the next time this
	// service commits a webhook event. Take it before looking for due events,
	// so that an event committed during the look is not missed.
	WebhookEnqueued() <-chan struct{}
	// Now returns the service clock's reading, in UTC to the microsecond: the
	// time the vault stamps on what it records and schedules.
	Now() time.Time
}

// AccessFailures is what the API needs to audit refused requests (PCI DSS
// 10.2.1.4): unknown, foreign and malformed ids, refused scopes, throttled
// requests, failed authentications.
type AccessFailures interface {
	// RecordAccessFailure records f for the audit trail. Repeats of one
	// source (action, outcome, reason, route, id, address, tenant and key)
	// within a window become one audit row with their count, written
	// through a group commit when the window ends; past a cap on sources
	// per window the rest fold into one row per action. It never waits for
	// the database and never fails: a write that fails is logged.
	RecordAccessFailure(ctx context.Context, f AccessFailure)
}

// Exports is what the merchant API needs of export jobs.
type Exports interface {
	// CreateExport starts an export job of the actor's tenant's tokens that
	// in.Filter selects, to destination in.DestinationID, and audits it. It
	// returns KindBadRequest for bad input or a URL the destination does not
	// allow, and KindNotFound for an unknown, removed or foreign destination.
	CreateExport(ctx context.Context, a Actor, in CreateExportInput) (ExportJob, error)
	// GetExport returns the actor's tenant's export job id. It returns
	// KindNotFound for an unknown or foreign id.
	GetExport(ctx context.Context, a Actor, id uuid.UUID) (ExportJob, error)
	// ListExports returns the actor's tenant's export jobs newest first,
	// after startingAfter when not uuid.Nil. It returns KindBadRequest for
	// a bad limit or cursor.
	ListExports(ctx context.Context, a Actor, limit int, startingAfter uuid.UUID) (ExportPage, error)
	// ListExportItems returns the ledger (and mapping) of the actor's
	// tenant's job id, optionally only items in status, after the item seq
	// startingAfter. It returns KindNotFound for an unknown or foreign job
	// and KindBadRequest or KindInvalid for a bad limit or status.
	ListExportItems(ctx context.Context, a Actor, id uuid.UUID, status ItemStatus, limit int, startingAfter int64) (ExportItemPage, error)
	// ExportMapping calls each with every item of the actor's tenant's
	// job id (the mapping of each token to the other vault's token), in
	// ledger order. It returns KindNotFound for an unknown or foreign job,
	// the first error of each, and a domain error when the database fails.
	ExportMapping(ctx context.Context, a Actor, id uuid.UUID, each func(ExportItem) error) error
	// AbortExport stops the actor's tenant's job id: no new send starts and
	// its headers are wiped. It returns KindNotFound for an unknown or
	// foreign id and KindConflict when the job has already ended.
	AbortExport(ctx context.Context, a Actor, id uuid.UUID) (ExportJob, error)
}

// ExportQueue is the export worker's side of export jobs: the forward path
// it sends through, leases on items, the ledger and completion.
type ExportQueue interface {
	// Forward sends one card through the forwarding engine (see Forwarding).
	Forward(ctx context.Context, a Actor, in ForwardInput) (ForwardingRequest, error)
	// ExportSetup returns what sending a running job's cards needs. It
	// returns ErrExportEnded once the job has ended, and a domain error
	// when the headers do not open or the database fails.
	ExportSetup(ctx context.Context, jobID uuid.UUID) (ExportSetup, error)
	// ClaimExportItems leases up to n due pending items of running jobs for
	// owner, skipping items other workers hold. It returns a domain error
	// when the database fails.
	ClaimExportItems(ctx context.Context, owner string, n int, ttl time.Duration) ([]ExportWork, error)
	// ReserveExportSends reserves the job's next n send slots, whichever
	// process sends them, and returns how long to wait before the first;
	// the others follow at the job's rate. It returns ErrExportEnded once
	// the job has ended, and a domain error when the database fails.
	ReserveExportSends(ctx context.Context, jobID uuid.UUID, n int) (time.Duration, error)
	// AuditExportItem commits the token.export audit row of owner's next
	// send of w and counts the attempt, before anything is sent. It returns
	// ErrExportEnded when the job ended or owner no longer holds w.
	AuditExportItem(ctx context.Context, owner string, w ExportWork) error
	// RecordExportAttempt stores the outcome of owner's send of w and
	// releases its lease. It returns ErrExportEnded when owner no longer
	// holds w, and a domain error when the database fails.
	RecordExportAttempt(ctx context.Context, owner string, w ExportWork, at ExportAttempt) error
	// ReleaseExportItem gives back owner's lease on w without an outcome.
	// It returns a domain error when the database fails.
	ReleaseExportItem(ctx context.Context, owner string, w ExportWork) error
	// RenewExportLeases extends owner's leases on held by ttl. It returns a
	// domain error when the database fails.
	RenewExportLeases(ctx context.Context, owner string, held []ExportWork, ttl time.Duration) error
	// ReleaseExportLeases gives back every export lease owner holds. It
	// returns a domain error when the database fails.
	ReleaseExportLeases(ctx context.Context, owner string) error
	// CompleteExports ends as finished every running job without a pending
	// item, and returns them. It returns a domain error when the database fails.
	CompleteExports(ctx context.Context) ([]ExportJob, error)
	// FailExport ends a running job as failed with reason (no secret, no
	// card data). It returns ErrExportEnded when it had already ended.
	FailExport(ctx context.Context, jobID uuid.UUID, reason string) error
	// ActiveExports returns which of ids name running jobs. It returns a
	// domain error when the database fails.
	ActiveExports(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error)
}

// FileImports is what the merchant API needs of file imports besides the
// Imports every provider shares.
type FileImports interface {
	// CreateFileImport stores the encrypted file in.File (read to its end, at
	// most in.MaxBytes) for the actor's tenant and starts a file import job
	// that any replica's worker runs, and audits. It returns a KindInvalid error
	// for an unknown format or an empty file, KindTooLarge (body_too_large) for
	// a file over in.MaxBytes, a KindConflict error naming the job when one is
	// already preparing or running, and a domain error when reading in.File or
	// the database fails.
	CreateFileImport(ctx context.Context, a Actor, in CreateFileImportInput) (ImportJob, error)
	// ImportMapping calls each with every line of the mapping of the actor's
	// tenant's file import id, in row order. It returns KindNotFound for an
	// unknown or foreign job and for a job that is not a file import, each's
	// error, and a domain error when the database fails.
	ImportMapping(ctx context.Context, a Actor, id uuid.UUID, each func(MappingLine) error) error
}

// FileImportQueue is the file import worker's side of file import jobs:
// the lease on a job, its encrypted file, and its rows' batched writes.
type FileImportQueue interface {
	// ClaimFileImport leases, for owner until ttl from now, the oldest active
	// file import no live worker holds (only job only, unless uuid.Nil), and
	// returns where it stands; false when there is none. It returns a domain
	// error when the database fails.
	ClaimFileImport(ctx context.Context, owner string, ttl time.Duration, only uuid.UUID) (FileImportWork, bool, error)
	// RenewFileImport extends owner's lease on the file import jobID by ttl.
	// It returns ErrImportEnded (IsImportEnded) when the job ended or owner
	// lost it.
	RenewFileImport(ctx context.Context, owner string, jobID uuid.UUID, ttl time.Duration) error
	// ReleaseFileImport gives back owner's lease on jobID, so another worker
	// may take it at once. It returns a domain error when the database fails.
	ReleaseFileImport(ctx context.Context, owner string, jobID uuid.UUID) error
	// ImportFile returns a reader of the encrypted file of the active file
	// import jobID. Its Read returns ErrImportEnded once the job has ended,
	// and a domain error when the database fails.
	ImportFile(ctx context.Context, jobID uuid.UUID) io.Reader
	// OpenPGPMessage returns the clear literal data of the OpenPGP message r,
	// decrypted as it is read with the tenant's live import keys. Its Read
	// fails with KindInvalid (pgp_integrity) when the message is truncated or
	// altered. It returns KindConflict (no_pgp_key) without a live key,
	// KindInvalid (pgp_wrong_key) when none opens it, KindInvalid
	// (pgp_invalid_file) when r is not an OpenPGP message, and kek_unavailable
	// when the KEK fails.
	OpenPGPMessage(ctx context.Context, a Actor, r io.Reader) (io.Reader, error)
	// StartFileImport moves owner's verified preparing file import to running
	// with total rows. It returns ErrImportEnded when the job ended or owner
	// lost it.
	StartFileImport(ctx context.Context, owner string, jobID uuid.UUID, total int64) error
	// ImportFileRows tokenizes and writes a batch of rows of owner's running
	// file import, following w.RowsDone, in one transaction with the job's
	// counts and resume point. It returns the batch's counts, ErrImportEnded
	// when the job ended, owner lost it or another worker wrote these rows,
	// and a domain error when the keys or the database fail.
	ImportFileRows(ctx context.Context, owner string, w FileImportWork, rows []FileRow, ttl time.Duration) (FileRowCounts, error)
	// FinishFileImport ends owner's running file import as finished, deletes
	// its file and queues import.finished. It returns ErrImportEnded when the
	// job ended or owner lost it.
	FinishFileImport(ctx context.Context, owner string, jobID uuid.UUID) (ImportJob, error)
	// FailImport ends an active job as failed with reason, a text for the
	// merchant that must hold no secret. It returns ErrImportEnded
	// (IsImportEnded) when the job had already ended.
	FailImport(ctx context.Context, jobID uuid.UUID, reason string) error
}
