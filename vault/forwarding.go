package vault

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault/card"
)

// The forwarding scopes. tokens:forward sends a stored card to an
// allow-listed destination without revealing it; tokens:reveal does not
// imply it, nor does it imply tokens:reveal.
const (
	// ScopeTokensForward creates forwarding requests and reads their records.
	ScopeTokensForward Scope = "tokens:forward"
	// ScopeForwardingRead reads forwarding requests and destinations.
	ScopeForwardingRead Scope = "forwarding:read"
	// ScopeForwardingManage adds and removes the tenant's destinations.
	ScopeForwardingManage Scope = "forwarding:manage"
)

// impliedScopes are the scopes each scope grants besides itself: whoever
// may forward cards or manage the allow-list may read the forwarding
// records and destinations (never the other way round).
var impliedScopes = map[Scope][]Scope{
	ScopeTokensForward:    {ScopeForwardingRead},
	ScopeForwardingManage: {ScopeForwardingRead},
	ScopeExportsWrite:     {ScopeExportsRead},
}

// implies reports whether holding scope grants want.
func implies(scope, want Scope) bool {
	for _, s := range impliedScopes[scope] {
		if s == want {
			return true
		}
	}
	return false
}

// The audited forwarding actions.
const (
	ActionTokenForward      Action = "token.forward"
	ActionDestinationCreate Action = "forwarding.destination.create"
	ActionDestinationDelete Action = "forwarding.destination.delete"
	ActionDestinationRead   Action = "forwarding.destination.read"
	ActionDestinationList   Action = "forwarding.destination.list"
	ActionForwardingRead    Action = "forwarding.request.read"
	ActionForwardingList    Action = "forwarding.request.list"
	ActionForwardingPrune   Action = "forwarding.request.prune"
	// ActionForwardingSweep is a pending record of a stopped process
	// marked failed by the sweeper, its outcome unknown.
	ActionForwardingSweep Action = "forwarding.request.sweep"
)

// DefaultForwardRetention is how long forwarding requests are kept when no
// retention is configured: 30 days, as Stripe keeps them.
const DefaultForwardRetention = 30 * 24 * time.Hour

// A pending record whose process stopped before writing the outcome is
// marked failed (forwarding_api_upstream_connection_error, outcome
// unknown) once it is older than its destination's timeout plus the grace
// (VAULT_FORWARD_PENDING_GRACE). The grace is at least
// MinForwardPendingGrace, which covers the bounds of the pre-send batch
// and of the outcome write (10 s each) with a margin for clocks, so that a
// forward still running is never swept; should one be, its outcome still
// replaces the sweeper's.
const (
	DefaultForwardPendingGrace = 2 * time.Minute
	MinForwardPendingGrace     = 30 * time.Second
)

// Limits on a forward request.
const (
	MaxForwardHeaders     = 50
	MaxForwardHeaderValue = 8 << 10
	MaxForwardURLLen      = 2048
)

// DestinationInput is a destination to add to a tenant's allow-list: a
// preset's configuration with the merchant's URL, or a custom one.
type DestinationInput struct {
	// URL is the pattern a forward's url must match: https, a DNS name, an
	// exact path or a prefix ending in "/*". With a preset that has its own
	// URL it may be "".
	URL string
	// Preset names a preset ("" for a custom destination).
	Preset string
	// Config is the rest of the destination as JSON: "format", "fields"
	// (each replacement to a path, {"path","expiry"}, or a list of those),
	// "secret_headers", "timeout_ms", "signature" {"encoding","header"} and
	// "remote_token_path". With a preset, only secret_headers (added to the
	// preset's), timeout_ms and signature may be given. Empty means none.
	Config json.RawMessage
	// SignatureSecret is the HMAC key of the signature rule, if any.
	SignatureSecret card.Secret
	// ClientCertificatePEM and ClientKeyPEM are the mTLS client certificate
	// and its private key, both PEM, or both empty.
	ClientCertificatePEM string
	ClientKeyPEM         card.Secret
}

// ForwardDestination is one entry of a tenant's allow-list. Its secrets
// (signature key, client certificate and key) are kept sealed and never
// returned: only whether it has them.
type ForwardDestination struct {
	ID       string // "fwddst_…"
	TenantID uuid.UUID
	URL      string
	Preset   string // "" for a custom destination
	// Config is the destination's format, fields, secret headers, timeout,
	// signature rule (without its secret) and remote token path as JSON.
	Config            json.RawMessage
	HasSignatureKey   bool
	HasClientCert     bool
	CreatedAt         time.Time
	ClientCertExpires *time.Time // the client certificate's NotAfter, when there is one
}

// ForwardHeader is one request or response header.
type ForwardHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ForwardInput is a forwarding request as the merchant sends it (Stripe's
// ForwardingRequest create parameters).
type ForwardInput struct {
	// PaymentMethod names the card: a token id or a business key.
	PaymentMethod string
	// URL is the destination endpoint; it must match one of the tenant's
	// destinations.
	URL string
	// Replacements are the card fields to fill: card_number, card_expiry,
	// card_cvc, cardholder_name, request_signature.
	Replacements []string
	// Body is the request body with its card fields left blank.
	Body string
	// Headers are sent along (the destination's credentials among them).
	Headers []ForwardHeader
	// Metadata is kept with the record.
	Metadata map[string]string
	// IdempotencyKey is the request's Idempotency-Key, "" without one: one
	// outbound request is made per key, and a retry gets its record.
	IdempotencyKey string
}

// ForwardStatus is where a forwarding request stands.
type ForwardStatus string

// The forward statuses.
const (
	ForwardPending   ForwardStatus = "pending"   // audited and about to be sent, or its process stopped
	ForwardSucceeded ForwardStatus = "succeeded" // the destination answered (any HTTP status)
	ForwardFailed    ForwardStatus = "failed"    // no usable answer came
)

// ForwardedRequest is what was sent, redacted.
type ForwardedRequest struct {
	Body    string          `json:"body"`
	Headers []ForwardHeader `json:"headers"`
}

// ForwardedResponse is what the destination answered, redacted.
type ForwardedResponse struct {
	Status  int             `json:"status"`
	Body    string          `json:"body"`
	Headers []ForwardHeader `json:"headers"`
}

// ForwardingRequest is the record of one forward, as kept for the
// retention: ids, the URL, timings, and the request and response redacted
// (number as first six and last four, CVC "***", secret headers replaced).
type ForwardingRequest struct {
	ID            string // "fwdreq_…"
	TenantID      uuid.UUID
	TokenID       uuid.UUID
	PaymentMethod string
	DestinationID string
	URL           string
	Replacements  []string
	Metadata      map[string]string
	Status        ForwardStatus
	ErrorCode     string // a CodeForward… code when Status is failed
	// DestinationDuration is from sending to the end of the answer.
	DestinationDuration time.Duration
	DestinationIP       string
	Request             ForwardedRequest
	Response            *ForwardedResponse // nil when no answer came
	CreatedAt           time.Time
	// Replayed is set on the record answered to a retry of an earlier
	// request with the same Idempotency-Key (nothing was sent again).
	Replayed bool
	// OutcomeUnknown is set on a failed record the sweeper finished: its
	// process stopped after the record committed and before the outcome
	// was written, so the destination may or may not have received it.
	OutcomeUnknown bool
	// RemoteTokenID is the destination's own token id, read from its
	// answer (before redaction, which may mask digit runs inside an id) at
	// the destination's remote_token_path; "" when it has none, the answer
	// has none there, or it holds the card's number. It is not stored.
	RemoteTokenID string
}

// FailureMessage says why a failed record failed, "" for any other.
func (r ForwardingRequest) FailureMessage() string {
	switch {
	case r.Status != ForwardFailed:
		return ""
	case r.OutcomeUnknown:
		return "the vault stopped after sending began and before the destination's answer was recorded: " +
			"whether the destination received the request is unknown"
	case r.ErrorCode == CodeForwardTimeout:
		return "the destination did not answer in time"
	case r.ErrorCode == CodeForwardUpstreamError:
		return "the destination's answer was larger than the vault keeps (1 MiB)"
	}
	return "the destination could not be reached"
}

// ListForwardingParams filters and pages a listing of forwarding requests,
// newest first.
type ListForwardingParams struct {
	// CreatedFrom (inclusive) and CreatedUntil (exclusive) bound the
	// creation time when set.
	CreatedFrom, CreatedUntil *time.Time
	Limit                     int    // 1–100
	StartingAfter             string // the last id of the previous page: older records
	EndingBefore              string // the first id of the next page: newer records
}

// ForwardingPage is one page of forwarding requests, newest first.
type ForwardingPage struct {
	Requests []ForwardingRequest
	HasMore  bool
}

// Forwarding is what the merchant API needs to use stored cards without
// seeing them: the tenant's destination allow-list, forwards, and their
// records.
type Forwarding interface {
	// CreateDestination adds a destination to the actor's tenant's
	// allow-list, its secrets sealed with the tenant data key, and audits
	// it. It returns a KindInvalid error (invalid_destination, naming the
	// setting) for a bad configuration, an unknown preset or a client
	// certificate that does not parse with its key.
	CreateDestination(ctx context.Context, a Actor, in DestinationInput) (ForwardDestination, error)
	// GetDestination returns the actor's tenant's destination id and audits
	// the read. It returns KindNotFound for an unknown, removed or foreign id.
	GetDestination(ctx context.Context, a Actor, id string) (ForwardDestination, error)
	// ListDestinations returns the actor's tenant's destinations, oldest
	// first, and audits the listing. It returns a domain error when the
	// database fails.
	ListDestinations(ctx context.Context, a Actor) ([]ForwardDestination, error)
	// DeleteDestination removes the actor's tenant's destination id: no
	// forward may use it any more, its secrets are destroyed, and the
	// records of forwards made through it stay. It is audited. It returns
	// KindNotFound for an unknown, removed or foreign id.
	DeleteDestination(ctx context.Context, a Actor, id string) error
	// Forward sends the card named by in.PaymentMethod to in.URL. In order:
	// the token is resolved (KindNotFound for an unknown or foreign one),
	// the URL matched against the allow-list (KindBadRequest,
	// forwarding_api_invalid_parameter, param url), the body built
	// (KindBadRequest for a body or replacement the destination cannot
	// take); then the audit row, the CVC's consumption (with card_cvc) and
	// a pending record commit together, and only then is the request sent.
	// Any answer of the destination is a success: the record holds its
	// status. When none came, the record is stored failed and returned with
	// a KindUpstream error (forwarding_api_upstream_connection_error, or
	// forwarding_api_upstream_error for an answer over the size limit) or
	// KindUpstreamTimeout (forwarding_api_upstream_connection_timeout). With
	// an IdempotencyKey, a retry within 24 hours gets the first request's
	// record (and error) without sending again, and the key with another
	// request is a KindIdempotency error.
	Forward(ctx context.Context, a Actor, in ForwardInput) (ForwardingRequest, error)
	// GetForwardingRequest returns the actor's tenant's record id and
	// audits the read. It returns KindNotFound for an unknown, pruned or
	// foreign id.
	GetForwardingRequest(ctx context.Context, a Actor, id string) (ForwardingRequest, error)
	// ListForwardingRequests returns the actor's tenant's records newest
	// first and audits the listing. It returns KindBadRequest for a bad
	// limit, both cursors at once, or a cursor naming no record.
	ListForwardingRequests(ctx context.Context, a Actor, p ListForwardingParams) (ForwardingPage, error)
}
