package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// errorClass is how one kind of domain error looks over HTTP.
type errorClass struct {
	status int
	typ    string
}

// classes maps every domain error kind to its HTTP status and error type:
// the one place where domain errors become HTTP.
var classes = map[vault.Kind]errorClass{
	vault.KindBadRequest:      {http.StatusBadRequest, "invalid_request_error"},
	vault.KindInvalid:         {http.StatusUnprocessableEntity, "invalid_request_error"},
	vault.KindUnauthenticated: {http.StatusUnauthorized, "authentication_error"},
	vault.KindForbidden:       {http.StatusForbidden, "permission_error"},
	vault.KindNotFound:        {http.StatusNotFound, "invalid_request_error"},
	vault.KindConflict:        {http.StatusConflict, "invalid_request_error"},
	vault.KindTooLarge:        {http.StatusRequestEntityTooLarge, "invalid_request_error"},
	vault.KindUnsupportedType: {http.StatusUnsupportedMediaType, "invalid_request_error"},
	vault.KindIdempotency:     {http.StatusBadRequest, "idempotency_error"},
	vault.KindRateLimited:     {http.StatusTooManyRequests, "invalid_request_error"},
	vault.KindUnavailable:     {http.StatusServiceUnavailable, "api_error"},
	vault.KindInternal:        {http.StatusInternalServerError, "api_error"},
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

// errorHandler writes any error a handler returns as the one JSON error
// shape. Internal causes are logged with the request id, never sent.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := domainError(err)
		cls, ok := classes[e.Kind]
		if !ok {
			cls = classes[vault.KindInternal]
		}
		if cls.status >= 500 && e.Code != codeOverloaded { // a refusal under load is not a failure to log
			log.Error("request failed", "request_id", requestID(c), "code", e.Code,
				"error", card.MaskPANs(err.Error()))
		}
		if cls.status == http.StatusServiceUnavailable {
			c.Response().Header().Set("Retry-After", "1")
		}
		body := errorBody{errorDetail{Type: cls.typ, Code: e.Code, Message: e.Message, Param: e.Param}}
		if err := c.JSON(cls.status, body); err != nil {
			log.Error("writing error response", "request_id", requestID(c), "error", err)
		}
	}
}

// domainError turns echo's own errors (unknown route, wrong method) into
// domain errors; any other error goes through vault.AsError.
func domainError(err error) *vault.Error {
	var he *echo.HTTPError
	if !errors.As(err, &he) {
		return vault.AsError(err)
	}
	switch he.Code {
	case http.StatusNotFound:
		return vault.Errorf(vault.KindNotFound, "route_not_found", "no such route")
	case http.StatusMethodNotAllowed:
		return &vault.Error{Kind: vault.KindBadRequest, Code: "method_not_allowed", Message: "method not allowed on this route"}
	case http.StatusRequestEntityTooLarge:
		return tooLarge()
	}
	return vault.Internal(err)
}
