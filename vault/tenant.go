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
