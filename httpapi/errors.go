package httpapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// kindMethodNotAllowed is the kind of a request whose path names a route
// that does not take its method: only the router makes it, so it is
// declared here rather than in the domain.
const kindMethodNotAllowed vault.Kind = "method_not_allowed"

// errorClass is how one kind of domain error looks over HTTP.
type errorClass struct {
	status int
	typ    string
	retry  bool // the condition passes by itself: the answer says Retry-After: 1
}

// classes maps every domain error kind to its HTTP status and error type:
// the one place where domain errors become HTTP.
var classes = map[vault.Kind]errorClass{
	vault.KindBadRequest:      {http.StatusBadRequest, "invalid_request_error", false},
	vault.KindInvalid:         {http.StatusUnprocessableEntity, "invalid_request_error", false},
	vault.KindUnauthenticated: {http.StatusUnauthorized, "authentication_error", false},
	vault.KindForbidden:       {http.StatusForbidden, "permission_error", false},
	vault.KindNotFound:        {http.StatusNotFound, "invalid_request_error", false},
	kindMethodNotAllowed:      {http.StatusMethodNotAllowed, "invalid_request_error", false},
	vault.KindConflict:        {http.StatusConflict, "invalid_request_error", false},
	vault.KindTooLarge:        {http.StatusRequestEntityTooLarge, "invalid_request_error", false},
	vault.KindUnsupportedType: {http.StatusUnsupportedMediaType, "invalid_request_error", false},
	vault.KindIdempotency:     {http.StatusBadRequest, "idempotency_error", false},
	vault.KindRateLimited:     {http.StatusTooManyRequests, "invalid_request_error", false}, // Retry-After set by the limiter
	vault.KindUnavailable:     {http.StatusServiceUnavailable, "api_error", true},
	vault.KindMisconfigured:   {http.StatusServiceUnavailable, "api_error", false},
	vault.KindUpstream:        {http.StatusBadGateway, "api_error", false},
	vault.KindUpstreamTimeout: {http.StatusGatewayTimeout, "api_error", false},
	vault.KindInternal:        {http.StatusInternalServerError, "api_error", false},
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
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := domainError(err)
	cls, ok := classes[e.Kind]
	if !ok {
		cls = classes[vault.KindInternal]
	}
	if cls.status >= 500 && e.Code != vault.CodeOverloaded { // a refusal under load is not a failure to log
		s.log.Error("request failed", append([]any{"request_id", requestID(c), "code", e.Code,
			"error", card.MaskPANs(err.Error())}, s.operatorHint(e)...)...)
	}
	if cls.retry {
		c.Response().Header().Set("Retry-After", "1")
	}
	body := errorBody{errorDetail{Type: cls.typ, Code: e.Code, Message: e.Message, Param: e.Param}}
	if err := c.JSON(cls.status, body); err != nil {
		s.log.Error("writing error response", "request_id", requestID(c), "error", err)
	}
}

// operatorHint returns the log attributes that tell an operator how to fix
// a configuration error: for kek_mismatch, the configured root KEK URI
// (redacted: no credentials) and what to do.
func (s *Server) operatorHint(e *vault.Error) []any {
	if e.Code != vault.CodeKEKMismatch {
		return nil
	}
	return []any{"kek_uri", crypto.RedactKEKURI(s.keys.RootKEKURI),
		"fix", "the configured root KEK cannot decrypt these tenant keysets; if `cardvault keys rotate-root` moved them " +
			"to another KEK, restart this process with VAULT_KEK_URI set to that KEK's URI"}
}

// domainError turns echo's own errors (unknown route, wrong method) into
// domain errors; any other error goes through vault.AsError. For a wrong
// method echo's router has already set the Allow header, listing the
// route's methods.
func domainError(err error) *vault.Error {
	var he *echo.HTTPError
	if !errors.As(err, &he) {
		return vault.AsError(err)
	}
	switch he.Code {
	case http.StatusNotFound:
		return vault.Errorf(vault.KindNotFound, vault.CodeRouteNotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return vault.Errorf(kindMethodNotAllowed, vault.CodeMethodNotAllowed, "this route does not take this method; the Allow header lists those it takes")
	case http.StatusRequestEntityTooLarge:
		return tooLarge()
	}
	return vault.Internal(err)
}
