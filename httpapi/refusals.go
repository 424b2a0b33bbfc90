package httpapi

import (
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// ctxRequestedID is the context key of the id a request names in its body
// (a forward's payment_method), audited like a path id when it is refused.
const ctxRequestedID = "cardvault.requested_id"

// requestedID returns the id the request names: its path id, else the one
// its handler set under ctxRequestedID.
func requestedID(c echo.Context) string {
	if id := c.Param("id"); id != "" {
		return id
	}
	id, _ := c.Get(ctxRequestedID).(string)
	return id
}

// auditRefusals is where every refused request passes: it names the route
// in the request's context (for the refusals the service audits itself:
// failed authentications and missing scopes) and audits the others from
// the error the handler returned: unknown, foreign and malformed ids (404),
// other refusals (403) and throttled requests (429). Recording never waits
// for the database (see vault.AccessFailures), so the answer is not held.
func (s *Server) auditRefusals(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		c.SetRequest(req.WithContext(vault.WithRoute(req.Context(), routeOf(c))))
		err := next(c)
		if err == nil {
			return nil
		}
		if f, ok := accessRefusal(c, err); ok {
			s.svc.RecordAccessFailure(c.Request().Context(), f)
		}
		return err
	}
}

// routeOf is the request's method and route pattern, never its URL (a
// path that matches no route is "(no route)").
func routeOf(c echo.Context) string {
	if c.Path() == "" {
		return c.Request().Method + " (no route)"
	}
	return c.Request().Method + " " + c.Path()
}

// accessRefusal returns the audit record of a request refused with err, and
// false for an error that is not an access refusal (bad input, conflicts,
// failures) or that the service audited already.
func accessRefusal(c echo.Context, err error) (vault.AccessFailure, bool) {
	e := domainError(err)
	a := actor(c)
	f := vault.AccessFailure{Reason: e.Code, Route: routeOf(c), RequestedID: requestedID(c),
		TenantID: a.TenantID, APIKeyID: a.APIKeyID, ClientAddr: c.RealIP(), RequestID: requestID(c)}
	switch {
	case e.Kind == vault.KindNotFound:
		f.Action, f.Outcome = vault.ActionAccessFailed, vault.OutcomeFailure
	case e.Kind == vault.KindForbidden && e.Code != vault.CodeMissingScope: // Require audits missing scopes
		f.Action, f.Outcome = vault.ActionAccessFailed, vault.OutcomeDenied
	case e.Kind == vault.KindRateLimited:
		f.Action, f.Outcome, f.Reason = vault.ActionAccessThrottled, vault.OutcomeDenied, throttleReason(a.APIKeyID)
	default:
		return vault.AccessFailure{}, false
	}
	return f, true
}

// throttleReason says which budget refused a request: its API key's rate
// once authenticated, else its address's failed authentications.
func throttleReason(key uuid.UUID) string {
	if key == uuid.Nil {
		return "auth_failure_budget"
	}
	return "api_key_rate"
}
