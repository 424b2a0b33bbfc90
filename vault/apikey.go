package vault

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Actor is who performs an operation, as authenticated by an API key, and
// where the request came from. Every audit row names it.
type Actor struct {
	TenantID   uuid.UUID
	APIKeyID   uuid.UUID // uuid.Nil for an operator at the command line
	Scopes     []Scope
	RequestID  string
	ClientAddr string
	// Operator names the person who ran a command-line operation (the
	// --operator flag or VAULT_OPERATOR, else user@host); "" for an API key.
	// Audit rows carry it in their detail as "operator".
	Operator string
}

// Operator returns the actor for a command-line operation on tenantID.
func Operator(tenantID uuid.UUID) Actor {
	return Actor{TenantID: tenantID, ClientAddr: "cli"}
}

// OperatorNamed returns the actor for a command-line operation on tenantID
// run by the person operator.
func OperatorNamed(tenantID uuid.UUID, operator string) Actor {
	return Actor{TenantID: tenantID, ClientAddr: "cli", Operator: operator}
}

// Can reports whether the actor holds scope, or a scope that implies it
// (see impliedScopes).
func (a Actor) Can(scope Scope) bool {
	for _, s := range a.Scopes {
		if s == scope || implies(s, scope) {
			return true
		}
	}
	return false
}

// Scope is a permission an API key holds.
type Scope string

// The scopes. tokens:reveal is separate from tokens:read so that reading
// masked records never implies seeing card numbers.
const (
	ScopeTokensCreate Scope = "tokens:create"
	// ScopeTokensUpdate lets a tokenization with an existing business key
	// replace the token's card number (Stripe's account updater). Without
	// it, tokens:create may still change the expiry, name and metadata.
	ScopeTokensUpdate Scope = "tokens:update"
	ScopeTokensRead   Scope = "tokens:read"
	ScopeTokensReveal Scope = "tokens:reveal"
	ScopeTokensDelete Scope = "tokens:delete"
	ScopeAuditRead    Scope = "audit:read"
	ScopeKeysManage   Scope = "keys:manage"
	ScopeImportsWrite Scope = "imports:write"
	ScopeImportsRead  Scope = "imports:read"
	// ScopeWebhooksManage sets, reads and deletes the tenant's webhook.
	ScopeWebhooksManage Scope = "webhooks:manage"
	// ScopeTokensSearch finds the tokens holding a card number the caller
	// already has ("do we hold this card?"); it never reveals a number.
	ScopeTokensSearch Scope = "tokens:search"
)

// AllScopes lists every scope, in a stable order.
var AllScopes = []Scope{ScopeTokensCreate, ScopeTokensUpdate, ScopeTokensRead, ScopeTokensReveal, ScopeTokensDelete,
	ScopeAuditRead, ScopeKeysManage, ScopeImportsWrite, ScopeImportsRead, ScopeWebhooksManage, ScopeTokensSearch,
	ScopeTokensForward, ScopeForwardingRead, ScopeForwardingManage,
	ScopeExportsWrite, ScopeExportsRead}

// ParseScopes parses a comma-separated scope list. It returns a KindInvalid
// error naming the first unknown scope, or when the list is empty.
func ParseScopes(list string) ([]Scope, error) {
	var out []Scope
	for _, part := range strings.Split(list, ",") {
		sc := Scope(strings.TrimSpace(part))
		if sc == "" {
			continue
		}
		if !knownScope(sc) {
			return nil, InvalidParam(CodeInvalidScope, "scopes", fmt.Sprintf("unknown scope %q", sc))
		}
		out = append(out, sc)
	}
	if len(out) == 0 {
		return nil, InvalidParam(CodeInvalidScope, "scopes", "at least one scope is required")
	}
	return out, nil
}

// APIKey describes an API key; the secret itself is never kept.
type APIKey struct {
	ID          uuid.UUID
	TenantID    uuid.UUID
	Prefix      string // non-secret, shown in listings
	Scopes      []Scope
	Description string
	CreatedAt   time.Time
	RevokedAt   *time.Time
	// ExpiresAt is when the key stops authenticating; nil when it never
	// expires.
	ExpiresAt *time.Time
	// LastUsedAt is when the key last authenticated a request, written at
	// most once every APIKeyUsageInterval; nil when never used.
	LastUsedAt *time.Time
}

// Expired reports whether the key has stopped authenticating at now.
func (k APIKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// APIKeyUsageInterval is how stale an API key's LastUsedAt may be: it is
// written at most once per interval per key, never per request.
const APIKeyUsageInterval = time.Minute

// NewAPIKey is what an operator asks for when creating an API key.
type NewAPIKey struct {
	TenantID    uuid.UUID
	Scopes      []Scope
	Description string
	// ExpiresIn is how long the key authenticates from its creation; zero
	// for a key that never expires.
	ExpiresIn time.Duration
	// Operator names the person at the command line who makes the key;
	// the key's audit row carries it.
	Operator string
}

func knownScope(sc Scope) bool {
	for _, s := range AllScopes {
		if s == sc {
			return true
		}
	}
	return false
}
