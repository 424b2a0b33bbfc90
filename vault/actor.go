package vault

import "github.com/google/uuid"

// Actor is who performs an operation, as authenticated by an API key, and
// where the request came from. Every audit row names it.
type Actor struct {
	TenantID   uuid.UUID
	APIKeyID   uuid.UUID // uuid.Nil for an operator at the command line
	Scopes     []Scope
	RequestID  string
	ClientAddr string
}

// Operator returns the actor for a command-line operation on tenantID.
func Operator(tenantID uuid.UUID) Actor {
	return Actor{TenantID: tenantID, ClientAddr: "cli"}
}

// Can reports whether the actor holds scope.
func (a Actor) Can(scope Scope) bool {
	for _, s := range a.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}
