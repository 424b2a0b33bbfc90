package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 64 << 10

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
// most MaxBodyBytes, no unknown fields, a single value; then checks dst's
// validate tags. An empty body is allowed only when allowEmpty. Errors are
// domain errors whose messages never quote the body.
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
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid_type", Param: typeErr.Field,
			Message: fmt.Sprintf("%s must be of type %s", fieldName(typeErr.Field), jsonTypeName(typeErr.Type.Kind().String()))}
	case errors.As(err, &syntaxErr):
		return malformed(fmt.Sprintf("the request body is not valid JSON (at byte %d)", syntaxErr.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed("the request body is not valid JSON (truncated)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_unknown", Param: name,
			Message: "unknown field " + vault.MaskPANs(name)}
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid_type", Message: fe.msg}
	}
	return malformed("the request body is not valid JSON")
}

func fieldName(f string) string {
	if f == "" {
		return "the request body"
	}
	return vault.MaskPANs(f)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int64", "float64":
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
