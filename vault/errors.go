package vault

import (
	"errors"
	"fmt"

	"github.com/cardvault/cardvault/vault/card"
)

// Kind classifies an error; the HTTP layer maps each kind to one status.
type Kind string

// The kinds of error the domain returns.
const (
	KindInvalid         Kind = "invalid"          // the request is well-formed but its data is not acceptable (422)
	KindBadRequest      Kind = "bad_request"      // the request itself is malformed (400)
	KindUnauthenticated Kind = "unauthenticated"  // no or unknown credentials (401)
	KindForbidden       Kind = "forbidden"        // credentials lack a permission (403)
	KindNotFound        Kind = "not_found"        // no such resource for this tenant (404)
	KindConflict        Kind = "conflict"         // state conflict, e.g. a unique key (409)
	KindTooLarge        Kind = "too_large"        // request body over the limit (413)
	KindUnsupportedType Kind = "unsupported_type" // request media type not accepted (415)
	KindIdempotency     Kind = "idempotency"      // an Idempotency-Key reused for another request (400)
	KindRateLimited     Kind = "rate_limited"     // over the caller's request budget; retry later (429)
	KindUnavailable     Kind = "unavailable"      // a dependency is down; retryable (503)
	KindUpstream        Kind = "upstream"         // a destination the vault sends to gave no usable answer (502)
	KindUpstreamTimeout Kind = "upstream_timeout" // a destination the vault sends to did not answer in time (504)
	KindInternal        Kind = "internal"         // a bug or an unexpected failure (500)
)

// Error is the error the domain returns to its callers. Message and Param are
// safe to show to an API client: they never contain card data. Err keeps the
// underlying cause for logs only.
type Error struct {
	Kind    Kind
	Code    string // machine-readable API code such as "invalid_number"
	Message string // human-readable, client-safe text
	Param   string // the request field at fault, e.g. "card.number"
	Err     error  // the cause; logged, never sent
}

// Error returns the client-safe message with the code.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind and code with a formatted,
// client-safe message. Never format card data into it.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidParam returns a KindInvalid error naming the request field at fault.
func InvalidParam(code, param, message string) *Error {
	return &Error{Kind: KindInvalid, Code: code, Message: message, Param: param}
}

// Internal wraps an unexpected cause as a KindInternal error whose message is
// generic; the cause is kept for the log.
func Internal(err error) *Error {
	return &Error{Kind: KindInternal, Code: "internal_error", Message: "an internal error occurred", Err: err}
}

// ErrorKind returns the kind of err: the Kind of the first *Error in its
// chain (KindInvalid for a *card.FieldError), or KindInternal for any other
// non-nil error, or "" for nil.
func ErrorKind(err error) Kind {
	if err == nil {
		return ""
	}
	return AsError(err).Kind
}

// AsError returns the first *Error in err's chain; a *card.FieldError becomes
// the KindInvalid *Error naming its param; any other error is Internal(err).
// It returns nil for a nil err.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var fe *card.FieldError
	if errors.As(err, &fe) {
		return InvalidParam(fe.Code, fe.Param, fe.Message)
	}
	return Internal(err)
}
