package postgres

import "github.com/google/uuid"

// newID returns a new time-ordered id (UUIDv7: 48 bits of milliseconds,
// then random bits) for the rows written at high volume, tokens and jobs:
// consecutive rows land on the same primary-key index pages instead of
// random ones, so the index stays in cache as a table grows. Ids made
// before (UUIDv4) keep working: nothing reads a time or an order out of an
// id, and keyset pages and lock orders compare ids as bytes. An id
// reveals the millisecond it was made, which the record's created_at says
// anyway. It panics only when the system's random source fails, as
// uuid.New does.
func newID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}
