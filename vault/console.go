package vault

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// The operator console's audited actions; its other actions are audited as
// their API twins are.
const (
	ActionConsoleSignIn  Action = "console.sign_in"
	ActionConsoleSignOut Action = "console.sign_out"
	// ActionAuditVerify records a verification of a tenant's audit chain.
	ActionAuditVerify Action = "audit.verify"
)

// SessionLife bounds a console session: it ends TTL after sign-in, or Idle
// after its last request, whichever comes first.
type SessionLife struct {
	TTL  time.Duration
	Idle time.Duration
}

// ConsoleSession is a signed-in operator console session. It holds no
// secret: the cookie's value is shown only when the session starts.
type ConsoleSession struct {
	// Actor is the API key the operator signed in with, as an actor of the
	// request at hand (its request id and client address).
	Actor Actor
	// KeyPrefix and KeyDescription name the API key, for display.
	KeyPrefix      string
	KeyDescription string
	// CSRFToken is the token every form of the session must carry.
	CSRFToken string
	ExpiresAt time.Time
}

// ConsoleSessions keeps the operator console's sign-ins as server-side
// records; the browser holds only a random secret, of which the vault keeps
// a hash.
type ConsoleSessions interface {
	// StartConsoleSession signs the actor (authenticated by its API key) in
	// for life, audits the sign-in, and returns the session's secret, to be
	// set as the cookie and shown nowhere else, with the session. It prunes
	// ended sessions on the way. It returns a KindInvalid error for a life
	// without a TTL or an idle timeout, and a domain error when the
	// database fails.
	StartConsoleSession(ctx context.Context, a Actor, life SessionLife) (string, ConsoleSession, error)
	// ConsoleSession returns the live session of secret, as an actor of the
	// request requestID from clientAddr. With touch, the request counts as
	// activity and pushes the idle timeout back. An unknown, ended or
	// tampered session, or one whose API key has been revoked, returns a
	// KindUnauthenticated error (not audited: the browser is sent to sign
	// in).
	ConsoleSession(ctx context.Context, secret, requestID, clientAddr string, touch bool) (ConsoleSession, error)
	// EndConsoleSession signs the session of secret out and audits it as a.
	// Ending an unknown session is not an error. It returns a domain error
	// when the database fails.
	EndConsoleSession(ctx context.Context, a Actor, secret string) error
	// PruneConsoleSessions deletes every ended session and returns how many
	// it deleted, or a domain error when the database fails.
	PruneConsoleSessions(ctx context.Context) (int64, error)
}

// ActivityDay is one UTC day of a tenant's activity.
type ActivityDay struct {
	Day      time.Time // midnight UTC
	Tokens   int64     // tokens created that day and still held
	Imported int64     // cards imported by the import jobs started that day
	Errors   int64     // audited actions that failed or were refused
}

// ActivityReport is a tenant's activity over its last days, oldest first.
type ActivityReport struct {
	Days       []ActivityDay
	TokensHeld int64
}

// ActivityReports is what the console's overview reads.
type ActivityReports interface {
	// Activity returns the actor's tenant's activity per UTC day over the
	// last days days (today included), every day present, oldest first.
	// It returns a KindBadRequest error for days outside 1–90 and a domain
	// error when the database fails.
	Activity(ctx context.Context, a Actor, days int) (ActivityReport, error)
}

// AuditFilter narrows a listing of audit events; its zero value lists all.
type AuditFilter struct {
	Action  Action
	TokenID uuid.UUID
}

// AuditSearch is what the console's audit view reads beyond the API's
// listing.
type AuditSearch interface {
	// FindAuditEvents is ListAuditEvents narrowed to the events that match
	// f, and audits the listing with the filter. Its errors are
	// ListAuditEvents's.
	FindAuditEvents(ctx context.Context, a Actor, f AuditFilter, limit int, startingAfter int64) (AuditPage, error)
	// VerifyTenantAudit verifies the actor's tenant's audit chain (as
	// VerifyAudit does) and audits the verification with its result. A
	// broken chain is reported in the report, not as an error; the error is
	// a domain error when the database fails.
	VerifyTenantAudit(ctx context.Context, a Actor) (AuditReport, error)
}

// TenantAPIKeys manages the actor's tenant's API keys, each change audited
// as the actor.
type TenantAPIKeys interface {
	// ListTenantAPIKeys returns the actor's tenant's API keys, newest first,
	// revoked ones included. It returns a domain error when the database
	// fails.
	ListTenantAPIKeys(ctx context.Context, a Actor) ([]APIKey, error)
	// CreateTenantAPIKey makes an API key of the actor's tenant with scopes,
	// audits it, and returns its secret, shown once, with its record. A key
	// can only grant scopes it holds itself: another returns a
	// KindForbidden error (missing_scope); no scope returns KindInvalid.
	CreateTenantAPIKey(ctx context.Context, a Actor, scopes []Scope, description string) (string, APIKey, error)
	// RevokeTenantAPIKey revokes the actor's tenant's key id at once, ends
	// its console sessions, and audits it. It returns a KindNotFound error
	// for an unknown, foreign or already revoked key.
	RevokeTenantAPIKey(ctx context.Context, a Actor, id uuid.UUID) (APIKey, error)
}
