package vault

import (
	"time"

	"github.com/google/uuid"
)

// Idempotency keys follow Stripe's semantics: the first answer to a request
// carrying a key is kept for IdempotencyTTL per tenant and key, and a retry
// with the same key and the same request replays it. The key and the request
// are known only by keyed hashes made with the tenant's PRF keyset, never in
// the clear (the body carries card data, and a key might), and only answers
// free of card data are kept.
const (
	// MaxIdempotencyKeyLen is the longest key accepted, in bytes.
	MaxIdempotencyKeyLen = 255
	// IdempotencyTTL is how long an answer is kept for replay.
	IdempotencyTTL = 24 * time.Hour
	// IdempotencyLockTimeout is how long a running request's hold on its key
	// lasts without renewal. The holder renews it while it runs (see
	// HoldIdempotent), so a key is taken over only when its process died.
	IdempotencyLockTimeout = 60 * time.Second
	// MaxStoredResponse is the largest answer body kept for replay; a larger
	// one is not kept and a retry runs again.
	MaxStoredResponse = 64 << 10
)

// IdempotentRequest is a request carrying an Idempotency-Key. Key and Body
// are hashed with the tenant's PRF keyset and then forgotten; neither is
// stored.
type IdempotentRequest struct {
	Key    string
	Method string
	Path   string
	Body   []byte
}

// StoredResponse is an answer kept for replay.
type StoredResponse struct {
	Status int
	Body   []byte
}

// IdempotencyClaim is the right to run one request under an idempotency key.
// Its holder must end it with FinishIdempotent or ReleaseIdempotent.
type IdempotencyClaim struct {
	TenantID uuid.UUID
	KeyHash  []byte    // the keyed hash of the Idempotency-Key
	Lock     uuid.UUID // proves the claim is this request's
}

// CheckIdempotencyKey returns a KindBadRequest error unless key is 1 to 255
// printable ASCII characters. Anything else is accepted: the key is never
// stored in the clear, so a client's UUIDs or order numbers are never
// mistaken for card numbers.
func CheckIdempotencyKey(key string) error {
	bad := func(msg string) error {
		return &Error{Kind: KindBadRequest, Code: CodeIdempotencyKeyInvalid, Param: "Idempotency-Key", Message: msg}
	}
	if key == "" || len(key) > MaxIdempotencyKeyLen {
		return bad("the Idempotency-Key header must be 1 to 255 characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return bad("the Idempotency-Key header must be printable ASCII")
		}
	}
	return nil
}
