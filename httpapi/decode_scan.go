package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/cardvault/cardvault/vault"
)

// mayBreakLimits reports whether body could nest deeper than MaxJSONDepth
// or hold an array: it has a '[' or more '{' than MaxJSONDepth, counted in
// strings too. Only then does a decoded body need scanBody.
func mayBreakLimits(body []byte) bool {
	return bytes.IndexByte(body, '[') >= 0 || bytes.Count(body, []byte{'{'}) > MaxJSONDepth
}

// scanBody walks the tokens of body that start before byte stop (all of
// them when stop < 0) and returns the first structural refusal among them: a syntax error, a duplicate name
// (parameter_duplicate), nesting deeper than MaxJSONDepth
// (nesting_too_deep), an array of more than MaxJSONArrayLen elements
// (array_too_long), or anything after the one top-level value. It returns
// nil if there is none. Paths join object keys with dots and leave array
// indices out.
func scanBody(body []byte, stop int) error {
	// As strict as decodeOptions: every syntax error and duplicate name the
	// decoder finds, the scan finds too.
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	s := scanner{dec: dec}
	for stop < 0 || s.dec.InputOffset() < int64(stop) {
		tok, err := s.dec.ReadToken()
		if err != nil {
			return s.syntaxError(err)
		}
		if err := s.token(tok); err != nil {
			return err
		}
		if len(s.open) == 0 {
			return s.end()
		}
	}
	return nil
}

// scanner is scanBody's state: the tokenizer and the containers open at
// its position, outermost first.
type scanner struct {
	dec  *jsontext.Decoder
	open []container
}

// container is an object or array the scanner is inside.
type container struct {
	array    bool
	path     string // of the container itself
	elems    int    // arrays: elements so far
	wantName bool   // objects: the next token is a member name
	member   string // objects: the path of the current member
}

// token takes the next token, checking array lengths and depth.
func (s *scanner) token(tok jsontext.Token) error {
	kind := tok.Kind()
	if kind == '}' || kind == ']' {
		s.open = s.open[:len(s.open)-1]
		return nil
	}
	path := ""
	if n := len(s.open); n > 0 {
		top := &s.open[n-1]
		switch {
		case top.array && top.elems == MaxJSONArrayLen:
			return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeArrayTooLong, Param: echoName(top.path),
				Message: fmt.Sprintf("arrays in the request body may have at most %d elements", MaxJSONArrayLen)}
		case top.array:
			top.elems++
		case top.wantName:
			top.wantName, top.member = false, joinPath(top.path, tok.String())
			return nil
		default:
			top.wantName = true
		}
		path = top.path
		if !top.array {
			path = top.member
		}
	}
	if kind == '{' || kind == '[' {
		return s.push(kind == '[', path)
	}
	return nil
}

// push opens a container at path, unless that nests too deep.
func (s *scanner) push(array bool, path string) error {
	if len(s.open) == MaxJSONDepth {
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeNestingTooDeep, Param: echoName(path),
			Message: fmt.Sprintf("the request body may nest objects and arrays at most %d deep", MaxJSONDepth)}
	}
	s.open = append(s.open, container{array: array, path: path, wantName: !array})
	return nil
}

// end checks that nothing but whitespace follows the top-level value.
func (s *scanner) end() error {
	if _, err := s.dec.ReadToken(); err != io.EOF {
		return malformed("the request body must hold a single JSON value")
	}
	return nil
}

// syntaxError turns the tokenizer's error into a refusal: a duplicate
// name, a truncated body or a syntax error at a byte offset.
func (s *scanner) syntaxError(err error) error {
	var serr *jsontext.SyntacticError
	switch {
	case errors.As(err, &serr) && serr.Err == jsontext.ErrDuplicateName:
		name := echoName(joinPath(s.open[len(s.open)-1].path, serr.JSONPointer.LastToken()))
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterDuplicate, Param: name,
			Message: "field " + name + " appears more than once"}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed("the request body is not valid JSON (truncated)")
	case serr != nil:
		return malformed(fmt.Sprintf("the request body is not valid JSON (at byte %d)", serr.ByteOffset))
	}
	return malformed("the request body is not valid JSON")
}

// joinPath returns the path of member key of the object at path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
