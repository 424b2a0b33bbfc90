package httpapi

import (
	"bytes"
	"encoding/json"
)

// flexString accepts a JSON string, a JSON number (kept as its decimal
// text) or null (empty): Stripe sends card fields as strings, other senders
// as numbers.
type flexString string

// UnmarshalJSON returns a *fieldError for any other JSON type; the message
// never quotes the value.
func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*f = flexString(b)
	default:
		return &fieldError{msg: "card fields must be strings or numbers"}
	}
	return nil
}
