// Package card is cardvault's card vocabulary with no database and no Tink:
// the PAN and CVC secret types, Luhn, IIN schemes, masking, expiry parsing,
// the PAN scanner and the log handler that keeps card numbers out of logs.
package card

// FieldError is the error the card parsers return: a request field that is
// not an acceptable card value. Message is client-safe: it never contains
// card data. The vault package turns it into its own invalid-param error.
type FieldError struct {
	Code    string // machine-readable code such as "invalid_number"
	Param   string // the request field at fault, e.g. "card.number"
	Message string // human-readable, client-safe text
}

// Error returns the code and the client-safe message.
func (e *FieldError) Error() string { return e.Code + ": " + e.Message }

// The codes of the card parsers' field errors.
const (
	CodeInvalidNumber      = "invalid_number"       // card number malformed or of the wrong length (422)
	CodeIncorrectNumber    = "incorrect_number"     // card number fails the Luhn check (422)
	CodeInvalidCVC         = "invalid_cvc"          // card verification code not 3 or 4 digits (422)
	CodeInvalidExpiryMonth = "invalid_expiry_month" // expiry month missing or not 1-12 (422)
	CodeInvalidExpiryYear  = "invalid_expiry_year"  // expiry year missing or out of range (422)
	CodeInvalidName        = "invalid_name"         // cardholder name unacceptable (422)
)

// invalid returns a *FieldError for param.
func invalid(code, param, message string) *FieldError {
	return &FieldError{Code: code, Param: param, Message: message}
}
