package vault

import (
	"time"

	"github.com/google/uuid"
)

// Key-management audit actions.
const (
	ActionKeyStatus   Action = "key.status"
	ActionKeyAdd      Action = "key.add"
	ActionKeyPromote  Action = "key.promote"
	ActionKeyDisable  Action = "key.disable"
	ActionKeyDestroy  Action = "key.destroy"
	ActionKEKRotate   Action = "kek.rotate"
	ActionReencrypt   Action = "key.reencrypt"
	ActionTenantShred Action = "tenant.destroy"
)

// EncryptionWarning is the encryption count past which status warns about
// a key: random-nonce AES-GCM must stay under 2^32 encryptions per key, and
// this leaves a wide margin to rotate.
const EncryptionWarning = 1 << 30

// KeyVersion is one version of a tenant's data key as status reports it.
type KeyVersion struct {
	KeyID       uint32    `json:"key_id"`
	State       string    `json:"state"`       // primary, active, disabled or destroyed
	Tokens      int64     `json:"tokens"`      // tokens it still protects, counted in the database
	Encryptions int64     `json:"encryptions"` // encryptions it has done (flushed every few seconds)
	CreatedAt   time.Time `json:"created_at"`
	AgeDays     int       `json:"age_days"`
	Overdue     bool      `json:"overdue"`             // older than the cryptoperiod and still primary or active
	NearLimit   bool      `json:"encryptions_warning"` // past EncryptionWarning: rotate now
}

// TenantKeyStatus is the key status of one tenant.
type TenantKeyStatus struct {
	TenantID         uuid.UUID    `json:"tenant_id"`
	Keys             []KeyVersion `json:"keys"`
	FingerprintKeyID uint32       `json:"fingerprint_key_id"`
}

// KeyReport is the status of every tenant's keys, as both `cardvault keys
// status --json` and GET /keys print it. It never holds key material.
type KeyReport struct {
	Tenants          []TenantKeyStatus `json:"tenants"`
	RootKEKURI       string            `json:"root_kek_uri,omitempty"` // redacted; for operators only (not in GET /keys)
	CryptoperiodDays int               `json:"cryptoperiod_days"`
}

// The kinds of key jobs.
const (
	KeyJobReencrypt     = "reencrypt"     // re-seal every token under the primary data key
	KeyJobRefingerprint = "refingerprint" // recompute every fingerprint under the primary PRF key
)

// KeyJob is an online key job: a re-encryption re-seals every token of a
// tenant that is not yet under the primary data key; a refingerprint
// recomputes every fingerprint not yet made with the primary PRF key.
type KeyJob struct {
	ID         uuid.UUID
	TenantID   uuid.UUID
	Kind       string // KeyJobReencrypt or KeyJobRefingerprint
	Status     string // pending, running, finished or failed
	Total      int64  // tokens to re-seal when the job was made
	Done       int64  // tokens re-sealed so far
	Error      string
	CreatedAt  time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	UpdatedAt  time.Time
}

// RootRotation reports what a root KEK rotation did or would do.
type RootRotation struct {
	Tenants int // tenants whose keysets were (or would be) re-wrapped
	Keysets int // keysets re-wrapped (or to re-wrap)
	Already int // keysets already under the new KEK (a resumed rotation)
	// AuditKeys is how many audit chain keys were (or would be) re-wrapped.
	AuditKeys int
}
