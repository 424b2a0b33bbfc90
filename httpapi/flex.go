package httpapi

import "github.com/go-json-experiment/json/jsontext"

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
