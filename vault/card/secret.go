package card

import (
	"fmt"
	"log/slog"
)

// redacted is how a Secret prints.
const redacted = "[REDACTED]"

// Secret is a credential the vault holds for a while — a Stripe API key, an
// import job's own vault API key. Like PAN it cannot print itself: String,
// GoString, Format (every verb), MarshalJSON and LogValue all give
// "[REDACTED]"; Reveal is the only way to the value.
type Secret struct {
	v string
}

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the credential itself, for the one call that must send it.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether s holds nothing.
func (s Secret) IsZero() bool { return s.v == "" }

// String returns "[REDACTED]".
func (s Secret) String() string { return redacted }

// GoString returns "[REDACTED]".
func (s Secret) GoString() string { return redacted }

// Format prints "[REDACTED]" under every verb.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, redacted) }

// MarshalJSON returns the JSON string "[REDACTED]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue makes slog print "[REDACTED]".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
