package vault

import (
	"time"

	"github.com/google/uuid"
)

// Tenant is a merchant whose tokens, keys and audit trail are kept apart
// from every other tenant's.
type Tenant struct {
	ID        uuid.UUID
	Name      string
	CreatedAt time.Time
}

// TenantSummary is a tenant as an operator's listing shows it.
type TenantSummary struct {
	Tenant
	DestroyedAt   *time.Time // when it was crypto-shredded; nil while it lives
	ActiveAPIKeys int        // keys neither revoked nor expired
	Tokens        int64      // tokens it holds
}
