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
	KindMisconfigured   Kind = "misconfigured"    // the server's configuration cannot serve it; an operator must act, a retry will not help (503)
	KindUpstream        Kind = "upstream"         // a destination the vault sends to gave no usable answer (502)
	KindUpstreamTimeout Kind = "upstream_timeout" // a destination the vault sends to did not answer in time (504)
	KindInternal        Kind = "internal"         // a bug or an unexpected failure (500)
)

// The error codes: the machine-readable "code" of every error the API answers.
// Each names its usual HTTP status; httpapi/errors.go maps kinds to statuses.
const (
	CodeInvalidNumber             = card.CodeInvalidNumber        // card number malformed or of the wrong length (422)
	CodeIncorrectNumber           = card.CodeIncorrectNumber      // card number fails the Luhn check (422)
	CodeInvalidCVC                = card.CodeInvalidCVC           // card verification code not 3 or 4 digits (422)
	CodeInvalidExpiryMonth        = card.CodeInvalidExpiryMonth   // expiry month missing or not 1-12 (422)
	CodeInvalidExpiryYear         = card.CodeInvalidExpiryYear    // expiry year missing or out of range (422)
	CodeInvalidName               = card.CodeInvalidName          // cardholder name unacceptable (422)
	CodeInvalidMetadata           = "invalid_metadata"            // metadata over its limits (422)
	CodeInvalidString             = "invalid_string"              // a text field with control characters or invalid UTF-8 (422)
	CodeStringTooLong             = "string_too_long"             // a text field over its length limit (422)
	CodeSensitiveData             = "sensitive_data"              // a card number where none may stand (422)
	CodeInvalidURL                = "invalid_url"                 // an unacceptable URL (422)
	CodeInvalidScope              = "invalid_scope"               // an unknown API key scope (422)
	CodeInvalidStatus             = "invalid_status"              // an unknown status filter (422)
	CodeInvalidPrefix             = "invalid_prefix"              // an API key prefix that is not 1-16 hex digits (422)
	CodeInvalidProvider           = "invalid_provider"            // an unknown import provider (422)
	CodeInvalidRetention          = "invalid_retention"           // a retention below the minimum (422)
	CodeInvalidUTF8               = "invalid_utf8"                // the body is not valid UTF-8 (400)
	CodeParameterMissing          = "parameter_missing"           // a required field is missing or null (400)
	CodeOverloaded                = "overloaded"                  // more requests in flight than the server takes; retry later (503)
	CodeInvalidExpiry             = "invalid_expiry"              // an API key lifetime that is not positive (422)
	CodeInvalidJSON               = "invalid_json"                // the body is not valid JSON (400)
	CodeBodyUnreadable            = "body_unreadable"             // the body could not be read (400)
	CodeNestingTooDeep            = "nesting_too_deep"            // JSON nested deeper than allowed (400)
	CodeArrayTooLong              = "array_too_long"              // a JSON array over its limit (400)
	CodeParameterDuplicate        = "parameter_duplicate"         // a JSON name given twice (400)
	CodeParameterUnknown          = "parameter_unknown"           // a field or parameter the route does not take (400)
	CodeParameterInvalid          = "parameter_invalid"           // a parameter with an unacceptable value (400)
	CodeParameterInvalidType      = "parameter_invalid_type"      // a field of the wrong JSON type (400)
	CodeMethodNotAllowed          = "method_not_allowed"          // the route does not take this method
	CodeIdempotencyKeyInvalid     = "idempotency_key_invalid"     // an Idempotency-Key that is not 1-255 printable ASCII characters (400)
	CodeIdempotencyKeyInUse       = "idempotency_key_in_use"      // the same Idempotency-Key is being processed (409)
	CodeIdempotencyError          = "idempotency_error"           // an Idempotency-Key reused with another request (400)
	CodeInvalidAPIKey             = "invalid_api_key"             // no or unknown API key (401), or a Stripe key of the wrong form (422)
	CodeMissingScope              = "missing_scope"               // the API key lacks the scope (403)
	CodeSessionInvalid            = "session_invalid"             // no live console session: unknown, ended or its key revoked (401)
	CodeCSRFTokenInvalid          = "csrf_token_invalid"          // a console form without its session's CSRF token (403)
	CodeClientCertificateRequired = "client_certificate_required" // the route needs a client certificate (403)
	CodeResourceMissing           = "resource_missing"            // no such resource for this tenant (404)
	CodeRouteNotFound             = "route_not_found"             // no such route (404)
	CodeConflict                  = "conflict"                    // a unique key already exists (409)
	CodeKeyInUse                  = "key_in_use"                  // the key still protects rows (409)
	CodeKeyIsPrimary              = "key_is_primary"              // the primary key cannot be retired; rotate first (409)
	CodeKeyAlreadyDisabled        = "key_already_disabled"        // the key is already retired (409)
	CodeKeyNotDisabled            = "key_not_disabled"            // the key must be retired before it is destroyed (409)
	CodeImportInProgress          = "import_in_progress"          // the tenant already has an active import (409)
	CodeRotationInProgress        = "rotation_in_progress"        // the tenant's key is already being rotated (409)
	CodeImportEnded               = "import_ended"                // the import job has ended (409)
	CodeBodyTooLarge              = "body_too_large"              // the body is over the limit (413)
	CodeUnsupportedMediaType      = "unsupported_media_type"      // the body is not JSON (415)
	CodeRateLimited               = "rate_limited"                // over the request budget; retry later (429)
	CodeInternalError             = "internal_error"              // a bug or an unexpected failure (500)
	CodeKEKMismatch               = "kek_mismatch"                // the root KEK answers but cannot open a tenant's keysets: they are wrapped by another KEK (503, no retry)
	CodeKEKUnavailable            = "kek_unavailable"             // the root KEK cannot be reached; retry later (503)
	CodeServiceUnavailable        = "service_unavailable"         // a dependency is down; retry later (503)

	// Forwarding (POST /v1/forwarding/requests answers Stripe's own codes).
	CodeInvalidForm             = "invalid_form"                               // the body is not valid form encoding (400)
	CodeInvalidDestination      = "invalid_destination"                        // a forwarding destination's setting is unacceptable (422)
	CodeTooManyDestinations     = "too_many_destinations"                      // the tenant has the most forwarding destinations allowed (409)
	CodeForwardInvalidParameter = "forwarding_api_invalid_parameter"           // a forward's parameter is unacceptable, or its url not allowed (400)
	CodeForwardConnectionError  = "forwarding_api_upstream_connection_error"   // the destination could not be reached (502)
	CodeForwardTimeout          = "forwarding_api_upstream_connection_timeout" // the destination did not answer in time (504)
	CodeForwardUpstreamError    = "forwarding_api_upstream_error"              // the destination's answer is unusable (502)

	// OpenPGP import keys and encrypted card files.
	CodeNoPGPKey       = "no_pgp_key"       // the tenant has no live import key (409)
	CodePGPWrongKey    = "pgp_wrong_key"    // the file is not encrypted to a live import key of the tenant (422)
	CodePGPInvalidFile = "pgp_invalid_file" // the file is not a readable OpenPGP message (422)
	CodePGPIntegrity   = "pgp_integrity"    // the file is truncated or altered: its integrity check fails (422)
	CodePGPKeyRetired  = "pgp_key_retired"  // the import key is already retired (409)
	CodePGPWeakKey     = "pgp_weak_key"     // a recipient key that is weak, expired or cannot encrypt (422)

	// Export jobs.
	CodeExportEnded = "export_ended" // the export job has ended (409)
)

// InvalidCursor returns the KindBadRequest error (parameter_invalid, param
// starting_after) of a cursor that is malformed or names no object of the
// list: the one answer every list gives.
func InvalidCursor() *Error {
	return &Error{Kind: KindBadRequest, Code: CodeParameterInvalid, Param: "starting_after",
		Message: "starting_after must name an object of this list, such as the last one of the previous page"}
}

// InvalidLimit returns the KindBadRequest error (parameter_invalid, param
// limit) of a page size that is not a whole number from 1 to 100.
func InvalidLimit() *Error {
	return &Error{Kind: KindBadRequest, Code: CodeParameterInvalid, Param: "limit",
		Message: "limit must be a whole number from 1 to 100"}
}

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
	return &Error{Kind: KindInternal, Code: CodeInternalError, Message: "an internal error occurred", Err: err}
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
