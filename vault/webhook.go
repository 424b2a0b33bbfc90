package vault

import (
	"net"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/google/uuid"
)

// EventType names what a webhook event reports.
type EventType string

// The webhook event types.
const (
	EventImportFinished EventType = "import.finished"
	EventImportFailed   EventType = "import.failed"
	EventImportAborted  EventType = "import.aborted"
	EventTokenCreated   EventType = "token.created"
	EventTokenUpdated   EventType = "token.updated"
	EventTokenDeleted   EventType = "token.deleted"
)

// The audited webhook actions.
const (
	ActionWebhookSet            Action = "webhook.set"
	ActionWebhookRead           Action = "webhook.read"
	ActionWebhookDelete         Action = "webhook.delete"
	ActionWebhookDeliveriesList Action = "webhook.deliveries.list"
	ActionWebhookGiveUp         Action = "webhook.give_up"
	ActionWebhookSecretRotate   Action = "webhook.secret_rotate"
)

// The overlap of a webhook secret rotation: how long the previous secret
// still signs deliveries next to the new one.
const (
	DefaultSecretOverlap = 24 * time.Hour
	MaxSecretOverlap     = 7 * 24 * time.Hour
)

// MaxWebhookURLLen is the longest webhook URL accepted.
const MaxWebhookURLLen = 2048

// Webhook is a tenant's webhook endpoint. Its signing secret is shown once,
// when it is set, and kept sealed.
type Webhook struct {
	TenantID  uuid.UUID
	URL       string
	CreatedAt time.Time // when this URL and secret were set
	// PreviousSecretExpiresAt is when the secret a rotation replaced stops
	// signing deliveries; zero when none does.
	PreviousSecretExpiresAt time.Time
}

// WebhookDelivery is one recorded attempt to deliver an event.
type WebhookDelivery struct {
	ID          int64
	EventID     string
	EventType   EventType
	Attempt     int // 1 for an event's first attempt
	AttemptedAt time.Time
	URL         string
	Status      int    // the receiver's HTTP status; 0 when none came
	Error       string // why no answer came, or why it did not count; "" otherwise
	Duration    time.Duration
	Outcome     DeliveryOutcome
}

// DeliveryOutcome is what an attempt meant for its event.
type DeliveryOutcome string

// The delivery outcomes.
const (
	OutcomeDelivered DeliveryOutcome = "delivered" // a 2xx answer: the event is done
	OutcomeRetrying  DeliveryOutcome = "retrying"  // failed; another attempt is scheduled
	OutcomeGaveUp    DeliveryOutcome = "gave_up"   // failed, and the retry window is over
)

// WebhookDeliveryPage is one page of delivery attempts, newest first.
type WebhookDeliveryPage struct {
	Deliveries []WebhookDelivery
	HasMore    bool
}

// IsLoopbackHost reports whether host (without port or brackets) is
// localhost or a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// EventClaim bounds what one claim of the webhook outbox takes, so that
// every tenant gets its turn and no endpoint takes more than its share.
type EventClaim struct {
	// Tenants is how many tenants' events one claim takes at most.
	Tenants int
	// PerTenant is how many events of one tenant it takes at most.
	PerTenant int
	// SkipTenants are tenants whose events are not claimed (this deliverer
	// is already sending to them).
	SkipTenants []uuid.UUID
	// SkipURLs are webhook URLs whose events are not claimed (their circuit
	// is open, or they take no more concurrent deliveries).
	SkipURLs []string
}

// ClaimedEvent is an outbox event claimed, under a lease, for one delivery
// attempt.
type ClaimedEvent struct {
	ID       string
	TenantID uuid.UUID
	Type     EventType
	URL      string      // the tenant's webhook URL now
	Secret   card.Secret // the tenant's signing secret; prints redacted
	// PreviousSecret is the secret a rotation replaced, while its overlap
	// lasts (zero otherwise): deliveries are signed with both.
	PreviousSecret card.Secret
	// Body is the JSON envelope to send and sign:
	// {"id":"evt_…","type":…,"created_at":…,"data":{…}}.
	Body []byte
	// Attempt counts this attempt: 1 for the first.
	Attempt int
	// FirstAttemptAt is when the event was first attempted (this claim's
	// time for a first attempt): the retry window runs from it.
	FirstAttemptAt time.Time
	// Err is set when the secret or the data could not be opened (keys
	// unavailable, tampered rows); the attempt must fail without sending.
	Err error
	// Seq is the event's place in the outbox; claims come sorted by it.
	Seq int64
}

// AttemptResult is how one delivery attempt went.
type AttemptResult struct {
	At        time.Time     // when the request was sent, by the service clock
	Status    int           // the receiver's HTTP status; 0 when no answer came
	Error     string        // why no answer came, or why it did not count; client-safe
	Duration  time.Duration // from sending to the end of the answer
	Delivered bool          // a 2xx answer
	// RetryAt is when to try again after a failure; the zero time gives
	// the event up.
	RetryAt time.Time
}
