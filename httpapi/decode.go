package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// Limits on a request body. A body over MaxBodyBytes answers 413; one that
// nests objects and arrays deeper than MaxJSONDepth, or holds an array of
// more than MaxJSONArrayLen elements, answers 400 before it is decoded.
const (
	MaxBodyBytes    = 64 << 10
	MaxJSONDepth    = 32
	MaxJSONArrayLen = 1000
)

// maxEchoedName is the longest field name or path, in bytes, that an error
// repeats back to the client; longer ones are cut and end in "…".
const maxEchoedName = 64

// validate checks request structs' validate tags, naming fields by their
// JSON names. validator caches struct metadata, so one instance serves all.
var validate = newValidator()

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	return v
}

// decodeJSON reads the request body into dst strictly: JSON media type, at
// most MaxBodyBytes, then everything decodeBody checks. An empty body is
// allowed only when allowEmpty. Errors are domain errors whose messages
// never quote the body: KindTooLarge (413), KindUnsupportedType (415) or
// KindBadRequest (400).
func decodeJSON(c echo.Context, dst any, allowEmpty bool) error {
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooLarge()
	}
	if err != nil {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "body_unreadable", Message: "the request body could not be read", Err: err}
	}
	if len(bytes.TrimSpace(body)) == 0 && allowEmpty {
		return nil
	}
	if err := checkJSONType(req); err != nil {
		return err
	}
	return decodeBody(body, dst)
}

// decodeBody decodes body, one JSON value, into dst and checks dst's
// validate tags. Before decoding it refuses what encoding/json would let
// through: invalid UTF-8 (which it would silently replace), nesting deeper
// than MaxJSONDepth, arrays longer than MaxJSONArrayLen, duplicate keys
// (where it would keep the last) and field names that match a struct field
// only case-insensitively (which it would accept). Every error is a
// KindBadRequest *vault.Error (KindInvalid is left to the domain) whose
// message and param never quote a value and mask any card number in a
// field name.
func decodeBody(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "invalid_utf8", Message: "the request body must be valid UTF-8"}
	}
	if err := scanJSON(body, reflect.TypeOf(dst)); err != nil {
		return err
	}
	if err := unmarshalStrict(body, dst); err != nil {
		return err
	}
	return validationError(validate.Struct(dst))
}

func tooLarge() *vault.Error {
	return vault.Errorf(vault.KindTooLarge, "body_too_large", "the request body must be at most %d bytes", MaxBodyBytes)
}

// checkJSONType returns a KindUnsupportedType error unless the request says
// its body is application/json.
func checkJSONType(req *http.Request) error {
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEApplicationJSON {
		return vault.Errorf(vault.KindUnsupportedType, "unsupported_media_type", "the request body must be application/json")
	}
	return nil
}

// unmarshalStrict decodes exactly one JSON value with no unknown fields.
func unmarshalStrict(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return malformed("the request body must hold a single JSON value")
	}
	return nil
}

// jsonError translates a decoding error into a client-safe domain error that
// names the field but never quotes the submitted value.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid_type", Param: echoName(typeErr.Field),
			Message: fmt.Sprintf("%s must be of type %s", fieldName(typeErr.Field), jsonTypeName(typeErr.Type.Kind().String()))}
	case errors.As(err, &syntaxErr):
		return malformed(fmt.Sprintf("the request body is not valid JSON (at byte %d)", syntaxErr.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed("the request body is not valid JSON (truncated)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return unknownField(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid_type", Message: fe.msg}
	}
	return malformed("the request body is not valid JSON")
}

// unknownField is the error for a field the request type does not have.
func unknownField(path string) *vault.Error {
	name := echoName(path)
	return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_unknown", Param: name, Message: "unknown field " + name}
}

func fieldName(f string) string {
	if f == "" {
		return "the request body"
	}
	return echoName(f)
}

// echoName returns a client-supplied field name or path fit to repeat in an
// error: long digit runs masked (maskDigitRuns), cut to maxEchoedName bytes.
func echoName(s string) string {
	s = maskDigitRuns(s)
	if len(s) <= maxEchoedName {
		return s
	}
	cut := maxEchoedName
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// maskDigitRuns returns s with every run of 12 or more ASCII digits (single
// spaces or dashes between digits allowed) masked as a PAN is: its first six
// and last four digits kept, '*' for the others. Unlike vault.MaskPANs it
// asks for no Luhn check, so no card number inside a longer run slips
// through; it is for echoing names a client chose, where nothing is lost.
func maskDigitRuns(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		if !isASCIIDigit(s[i]) {
			i++
			continue
		}
		var digits []int // offsets of the run's digits
		j := i
		for ; j < len(s); j++ {
			if isASCIIDigit(s[j]) {
				digits = append(digits, j)
				continue
			}
			if (s[j] == ' ' || s[j] == '-') && j+1 < len(s) && isASCIIDigit(s[j+1]) {
				continue
			}
			break
		}
		if len(digits) >= 12 {
			if b == nil {
				b = []byte(s)
			}
			for _, at := range digits[6 : len(digits)-4] {
				b[at] = '*'
			}
		}
		i = j
	}
	if b == nil {
		return s
	}
	return string(b)
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

func jsonTypeName(kind string) string {
	switch kind {
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	}
	return kind
}

func malformed(msg string) *vault.Error {
	return &vault.Error{Kind: vault.KindBadRequest, Code: "invalid_json", Message: msg}
}

// validationError turns the first validator failure into a KindBadRequest
// error naming the field by its JSON path.
func validationError(err error) error {
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) || len(verrs) == 0 {
		return err
	}
	fe := verrs[0]
	param := jsonPath(fe.Namespace())
	code, msg := "parameter_invalid", param+" is invalid"
	switch fe.Tag() {
	case "required":
		code, msg = "parameter_missing", param+" is required"
	case "max":
		msg = param + " must have at most " + fe.Param() + " entries or characters"
	}
	return &vault.Error{Kind: vault.KindBadRequest, Code: code, Param: param, Message: msg}
}

// jsonPath turns validator's "tokenizeRequest.Card" namespace into the JSON
// path "card", using the json tag names registered below.
func jsonPath(ns string) string {
	if i := strings.IndexByte(ns, '.'); i >= 0 {
		return ns[i+1:]
	}
	return ns
}

// fieldError is returned by custom unmarshalers with a client-safe message.
type fieldError struct{ msg string }

func (e *fieldError) Error() string { return e.msg }

// jsonScanner walks a JSON document token by token alongside the Go type it
// will be decoded into, enforcing what encoding/json does not.
type jsonScanner struct {
	dec   *json.Decoder
	depth int
}

// scanJSON checks that body is a single JSON value within MaxJSONDepth and
// MaxJSONArrayLen, without duplicate keys, whose object keys name fields of
// t exactly (case-sensitively) where t is a struct. It returns nil or a
// KindBadRequest *vault.Error.
func scanJSON(body []byte, t reflect.Type) error {
	s := &jsonScanner{dec: json.NewDecoder(bytes.NewReader(body))}
	s.dec.UseNumber() // numbers stay text: no overflow errors that quote them
	if err := s.value(t, ""); err != nil {
		return err
	}
	if _, err := s.dec.Token(); err != io.EOF {
		return malformed("the request body must hold a single JSON value")
	}
	return nil
}

// value scans one JSON value that decodes into t (nil when unknown) at the
// JSON path.
func (s *jsonScanner) value(t reflect.Type, path string) error {
	tok, err := s.dec.Token()
	if err != nil {
		return jsonError(err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if s.depth++; s.depth > MaxJSONDepth {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "nesting_too_deep", Param: echoName(path),
			Message: fmt.Sprintf("the request body may nest objects and arrays at most %d deep", MaxJSONDepth)}
	}
	defer func() { s.depth-- }()
	if d == '[' {
		err = s.array(t, path)
	} else {
		err = s.object(t, path)
	}
	if err != nil {
		return err
	}
	if _, err := s.dec.Token(); err != nil { // the closing delimiter
		return jsonError(err)
	}
	return nil
}

// array scans the elements of an array up to its closing bracket.
func (s *jsonScanner) array(t reflect.Type, path string) error {
	sh := shapeOf(t)
	for n := 0; s.dec.More(); n++ {
		if n == MaxJSONArrayLen {
			return &vault.Error{Kind: vault.KindBadRequest, Code: "array_too_long", Param: echoName(path),
				Message: fmt.Sprintf("arrays in the request body may have at most %d elements", MaxJSONArrayLen)}
		}
		if err := s.value(sh.elem, path); err != nil {
			return err
		}
	}
	return nil
}

// object scans the members of an object up to its closing brace.
func (s *jsonScanner) object(t reflect.Type, path string) error {
	sh := shapeOf(t)
	seen := make(map[string]struct{})
	for s.dec.More() {
		tok, err := s.dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, _ := tok.(string)
		p := key
		if path != "" {
			p = path + "." + key
		}
		if _, dup := seen[key]; dup {
			name := echoName(p)
			return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_duplicate", Param: name,
				Message: "field " + name + " appears more than once"}
		}
		seen[key] = struct{}{}
		elem := sh.elem
		if sh.fields != nil {
			var ok bool
			if elem, ok = sh.fields[key]; !ok {
				return unknownField(p)
			}
		}
		if err := s.value(elem, p); err != nil {
			return err
		}
	}
	return nil
}

// shape is what the scanner knows of a Go type: the JSON fields of a struct
// by exact name, or the element type of a map, slice or array. The zero
// shape (an unknown, scalar or custom-decoded type) checks structure only.
type shape struct {
	fields map[string]reflect.Type
	elem   reflect.Type
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	shapes          sync.Map // reflect.Type → shape
)

// shapeOf returns the shape of t, cached.
func shapeOf(t reflect.Type) shape {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return shape{}
	}
	if sh, ok := shapes.Load(t); ok {
		return sh.(shape)
	}
	var sh shape
	switch pt := reflect.PointerTo(t); {
	case pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler):
	case t.Kind() == reflect.Struct:
		sh.fields = make(map[string]reflect.Type)
		addFields(sh.fields, t)
	case t.Kind() == reflect.Map, t.Kind() == reflect.Slice, t.Kind() == reflect.Array:
		sh.elem = t.Elem()
	}
	shapes.Store(t, sh)
	return sh
}

// addFields adds the JSON names of struct t's fields to fields, promoting
// the fields of untagged embedded structs as encoding/json does (the outer
// name wins).
func addFields(fields map[string]reflect.Type, t reflect.Type) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, et := range embedded {
		inner := make(map[string]reflect.Type)
		addFields(inner, et)
		for name, ft := range inner {
			if _, taken := fields[name]; !taken {
				fields[name] = ft
			}
		}
	}
}
