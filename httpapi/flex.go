package httpapi

import (
	"bytes"
	"encoding/json"

	"github.com/go-json-experiment/json/jsontext"
)

// flexString accepts a JSON string, a JSON number (kept as its decimal
// text) or null (empty): Stripe sends card fields as strings, other senders
// as numbers.
type flexString string

// UnmarshalJSONFrom reads one string, number or null from dec. It returns a
// *fieldError, whose message never quotes the value, for an object, array
// or boolean, and the tokenizer's error for bad JSON.
func (f *flexString) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case '{', '[', 't', 'f':
		return &fieldError{msg: "card fields must be strings or numbers"}
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	*f = ""
	if tok.Kind() != 'n' {
		*f = flexString(tok.String())
	}
	return nil
}

// UnmarshalJSON is UnmarshalJSONFrom for encoding/json, which only
// decodeBodyFast still uses. It returns a *fieldError for any other JSON
// type; the message never quotes the value.
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
