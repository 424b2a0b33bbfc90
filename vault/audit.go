package vault

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Action names what an audit event records.
type Action string

// The audited actions.
const (
	ActionTenantCreate Action = "tenant.create"
	ActionKeysetCreate Action = "keyset.create"
	ActionAPIKeyCreate Action = "api_key.create"
	ActionAPIKeyRevoke Action = "api_key.revoke"
	ActionAuthFailed   Action = "auth.failed"
	ActionAuthDenied   Action = "auth.denied"
	ActionTokenCreate  Action = "token.create"
	ActionTokenUpdate  Action = "token.update"
	ActionTokenRead    Action = "token.read"
	ActionTokenList    Action = "token.list"
	ActionTokenSearch  Action = "token.search"
	ActionTokenReveal  Action = "token.reveal"
	ActionTokenDelete  Action = "token.delete"
	// ActionTokenVersionsList is a read of a token's replaced card versions.
	ActionTokenVersionsList Action = "token.versions.list"
	ActionCVCPurge          Action = "cvc.purge"
	ActionAuditList         Action = "audit.list"
)

// Outcome is how an audited action ended.
type Outcome string

// The outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomeDenied  Outcome = "denied"
)

// AuditEvent is one row of the audit trail. It never holds card data:
// Detail carries only ids, counts, field names and free-text reasons that the
// vault has checked for card numbers.
type AuditEvent struct {
	ID         int64
	OccurredAt time.Time
	TenantID   uuid.UUID // uuid.Nil when unknown (a failed authentication)
	APIKeyID   uuid.UUID
	Action     Action
	TokenID    uuid.UUID
	RequestID  string
	ClientAddr string
	Outcome    Outcome
	Detail     map[string]any
}

// AuditPage is one page of audit events, newest first.
type AuditPage struct {
	Events  []AuditEvent
	HasMore bool
}

// The audit chain's own actions.
const (
	// ActionAuditPrune records the retention pruning of one chain's oldest
	// rows; its detail names the new checkpoint.
	ActionAuditPrune Action = "audit.prune"
)

// DefaultAuditRetention is how long audit rows are kept when no retention
// is configured.
const DefaultAuditRetention = 400 * 24 * time.Hour

// MinAuditRetention is the shortest retention PruneAudit accepts.
const MinAuditRetention = 24 * time.Hour

// SystemChain is the chain of audit rows without a tenant (failed
// authentications); it is keyed by the nil UUID.
var SystemChain = uuid.Nil

// AuditBreakReason says why a chain does not verify.
type AuditBreakReason string

// The ways a chain can break.
const (
	// AuditChanged: the row's content no longer matches its hash.
	AuditChanged AuditBreakReason = "changed"
	// AuditMissing: a sequence number is missing (a row was deleted).
	AuditMissing AuditBreakReason = "missing"
	// AuditReordered: the row does not link to the row before it (rows
	// were moved or swapped).
	AuditReordered AuditBreakReason = "reordered"
	// AuditHeadMismatch: the chain does not end where its recorded head
	// says (rows were removed from or added to the end).
	AuditHeadMismatch AuditBreakReason = "head_mismatch"
	// AuditCheckpointMismatch: the retention checkpoint is not the one the
	// newest audit.prune row of the chain recorded.
	AuditCheckpointMismatch AuditBreakReason = "checkpoint_mismatch"
)

// AuditBreak is the first bad row of a chain.
type AuditBreak struct {
	Chain   string           `json:"chain"` // the tenant id, or "system"
	ID      int64            `json:"id"`    // the row found where the bad one should be; 0 when there is none
	Seq     int64            `json:"seq"`   // the sequence number at fault
	Reason  AuditBreakReason `json:"reason"`
	Message string           `json:"message"`
}

// AuditReport is the result of verifying the audit chains.
type AuditReport struct {
	OK        bool         `json:"ok"`
	Rows      int64        `json:"rows"`      // chained rows verified
	Chains    int          `json:"chains"`    // chains verified
	Unchained int64        `json:"unchained"` // rows not chained (only rows from before written-once rows can be)
	Pruned    int64        `json:"pruned"`    // rows removed under retention, covered by checkpoints
	Breaks    []AuditBreak `json:"breaks"`    // the first bad row of every broken chain
}

// The refused-access actions and outcome (PCI DSS 10.2.1.4: every invalid
// logical access attempt is audited). auth.failed and auth.denied above
// record failed authentications and refused scopes.
const (
	// ActionAccessFailed records a request for an id that is unknown,
	// another tenant's or malformed (all answer 404 alike), or for a route
	// that does not exist.
	ActionAccessFailed Action = "access.failed"
	// ActionAccessThrottled records a request refused 429 (outcome
	// denied): over its API key's rate, or a failed authentication past its
	// address's budget.
	ActionAccessThrottled Action = "access.throttled"
)

// AccessFailure is one refused request as the audit trail records it.
// Repeats from one source within a window share one audit row with their
// count. It never holds card data: RequestedID is dropped when it holds a
// card number.
type AccessFailure struct {
	Action  Action
	Outcome Outcome
	// Reason is a code: unknown_key, wrong_secret, missing_scope,
	// resource_missing, rate_limited…
	Reason string
	// Route is the request's method and route pattern, never its URL.
	Route string
	// RequestedID is the id the request named in its path; "" when none.
	RequestedID string
	// Scope is the scope a denied request lacked; "" otherwise.
	Scope      Scope
	TenantID   uuid.UUID // uuid.Nil before authentication
	APIKeyID   uuid.UUID // uuid.Nil when no key was recognised
	ClientAddr string
	RequestID  string
}

// routeKey is the context key of the route a request came by.
type routeKey struct{}

// WithRoute returns ctx naming the route (method and pattern) of the
// request it serves, for the audit rows of its refusals.
func WithRoute(ctx context.Context, route string) context.Context {
	return context.WithValue(ctx, routeKey{}, route)
}

// RouteOf returns the route WithRoute named in ctx, or "".
func RouteOf(ctx context.Context) string {
	r, _ := ctx.Value(routeKey{}).(string)
	return r
}

// The ways a checkpoint can fail verification.
const (
	// AuditTruncated: a checkpoint names a row that is no longer there
	// because the lane ends before it (rows were deleted from the end and
	// the head moved back).
	AuditTruncated AuditBreakReason = "truncated"
	// AuditRewritten: the row a checkpoint names is there but has another
	// hash (the lane was rewritten after the checkpoint).
	AuditRewritten AuditBreakReason = "rewritten"
	// AuditCheckpointInvalid: a checkpoint's MAC does not verify under the
	// chain's key (it was forged or edited).
	AuditCheckpointInvalid AuditBreakReason = "checkpoint_invalid"
)

// AuditCheckpoint is the head of one lane of one chain at a point in
// time, MAC'd with the chain's key: exported out of the database, it lets
// a later verification prove that no row up to Seq was removed or
// rewritten since.
type AuditCheckpoint struct {
	Chain     string    `json:"chain"` // the tenant id, or "system"
	Lane      int       `json:"lane"`
	Seq       int64     `json:"seq"`  // the lane's newest row (also how many rows the lane has held)
	Hash      string    `json:"hash"` // that row's hash, hex
	CreatedAt time.Time `json:"created_at"`
	MAC       string    `json:"mac"` // HMAC-SHA256 under the chain key, hex
}
