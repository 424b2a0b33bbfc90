package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// Limits on a request body. A body over MaxBodyBytes answers 413; one that
// nests objects and arrays deeper than MaxJSONDepth, or holds an array of
// more than MaxJSONArrayLen elements, answers 400 (scanBody).
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
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeBodyUnreadable, Message: "the request body could not be read", Err: err}
	}
	if blank(body) && allowEmpty {
		return nil
	}
	if err := checkJSONType(req); err != nil {
		return err
	}
	return decodeBody(body, dst)
}

// decodeOptions make the one decoder strict: a member the request type does
// not have, a name that appears twice in an object and invalid UTF-8 (or an
// escaped half of a surrogate pair) are errors, never ignored, merged or
// replaced. Names match struct fields exactly, case included (the default).
var decodeOptions = json.JoinOptions(
	json.RejectUnknownMembers(true),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// decodeBody decodes body, one JSON value, into dst, a pointer to a zero
// request struct, in one pass with github.com/go-json-experiment/json
// (decodeOptions), then checks dst's validate tags. Every refusal is a
// KindBadRequest *vault.Error (KindInvalid is left to the domain) whose
// message and param never quote a value and mask any card number in a
// field name: "the body is empty" for nothing but whitespace, invalid_utf8
// for invalid UTF-8 anywhere, then what refusal decides if decoding fails,
// then the nesting and array limits (scanBody), then the validate tags.
// A dst that is not a non-nil pointer is a plain error (a bug, not a 400).
func decodeBody(body []byte, dst any) error {
	if v := reflect.ValueOf(dst); v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("httpapi: cannot decode a request body into %T", dst)
	}
	if blank(body) {
		return malformed("the body is empty")
	}
	if !utf8.Valid(body) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeInvalidUTF8, Message: "the request body must be valid UTF-8"}
	}
	if err := json.Unmarshal(body, dst, decodeOptions); err != nil {
		return refusal(body, dst, err)
	}
	if mayBreakLimits(body) {
		if err := scanBody(body, -1); err != nil {
			return err
		}
	}
	return validationError(validate.Struct(dst))
}

// blank reports whether body holds nothing but JSON whitespace.
func blank(body []byte) bool {
	return len(bytes.Trim(body, " \t\r\n")) == 0
}

// refusal returns the refusal for a body that failed to decode into dst
// with err. The structural scan (scanBody) speaks first: a syntax error, a
// duplicate name, too deep a nesting or too long an array anywhere in the
// body is reported rather than a value of the wrong type
// (parameter_invalid_type, named by its struct field path). An unknown
// member (parameter_unknown, named by its full path) ends the scan at its
// name, where the decoder stopped. The decoder stops at the first value of
// a wrong type too, so an unknown member after one is not reported.
func refusal(body []byte, dst any, err error) error {
	stop := -1
	var se *json.SemanticError
	unknown := errors.As(err, &se) && se.Err == json.ErrUnknownName
	if unknown {
		stop = int(se.ByteOffset)
	}
	if serr := scanBody(body, stop); serr != nil {
		return serr
	}
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalidType, Message: fe.msg}
	case unknown:
		return unknownField(pointerPath(reflect.TypeOf(dst), se.JSONPointer, true))
	case se != nil:
		return typeError(pointerPath(reflect.TypeOf(dst), se.JSONPointer, false), se.GoType)
	}
	return malformed("the request body is not valid JSON")
}

// typeError is the error for a value of the wrong JSON type at the struct
// field path (map keys and array indices left out), where want is the Go
// type it would have to decode into.
func typeError(path string, want reflect.Type) *vault.Error {
	return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalidType, Param: echoName(path),
		Message: fmt.Sprintf("%s must be of type %s", fieldName(path), jsonTypeName(want))}
}

// pointerPath turns a JSON pointer into t into a dotted path: struct field
// names, and object keys of maps when mapKeys; array indices never.
func pointerPath(t reflect.Type, ptr jsontext.Pointer, mapKeys bool) string {
	var parts []string
	for tok := range ptr.Tokens() {
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		keep := true
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			t = fieldType(t, tok)
		case t.Kind() == reflect.Map:
			keep, t = mapKeys, t.Elem()
		case t.Kind() == reflect.Slice, t.Kind() == reflect.Array:
			keep, t = false, t.Elem()
		default:
			t = nil
		}
		if keep {
			parts = append(parts, tok)
		}
	}
	return strings.Join(parts, ".")
}

// fieldType returns the type of struct t's field whose JSON name is name,
// or nil.
func fieldType(t reflect.Type, name string) reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && f.Name == name) {
			return f.Type
		}
	}
	return nil
}

func tooLarge() *vault.Error {
	return vault.Errorf(vault.KindTooLarge, vault.CodeBodyTooLarge, "the request body must be at most %d bytes", MaxBodyBytes)
}

// checkJSONType returns a KindUnsupportedType error unless the request says
// its body is application/json.
func checkJSONType(req *http.Request) error {
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEApplicationJSON {
		return vault.Errorf(vault.KindUnsupportedType, vault.CodeUnsupportedMediaType, "the request body must be application/json")
	}
	return nil
}

// unknownField is the error for a field the request type does not have.
func unknownField(path string) *vault.Error {
	name := echoName(path)
	return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterUnknown, Param: name, Message: "unknown field " + name}
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
// and last four digits kept, '*' for the others. Unlike card.MaskPANs it
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

// jsonTypeName names the JSON type a value of Go type t is decoded from.
func jsonTypeName(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "the documented type"
	}
	switch k := t.Kind(); {
	case k == reflect.Map, k == reflect.Struct:
		return "object"
	case k == reflect.Slice, k == reflect.Array:
		return "array"
	case k >= reflect.Int && k <= reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

func malformed(msg string) *vault.Error {
	return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeInvalidJSON, Message: msg}
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
		code, msg = vault.CodeParameterMissing, param+" is required"
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
