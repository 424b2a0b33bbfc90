package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
)

// Context keys set by the middleware.
const (
	ctxRequestID = "cardvault.request_id"
	ctxActor     = "cardvault.actor"
)

// HeaderRequestID names the header that carries each response's request id.
const HeaderRequestID = "Request-Id"

// withRequestID gives every request a fresh id, sent back in the Request-Id
// header and recorded in logs and audit rows.
func withRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := newRequestID()
		c.Set(ctxRequestID, id)
		c.Response().Header().Set(HeaderRequestID, id)
		return next(c)
	}
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// RequestDeadline bounds the work of one request: past it, database calls
// are cancelled and the request answers 503, so a database that stops
// answering without closing its connections (a network partition) cannot
// hold requests until the write timeout.
const RequestDeadline = 15 * time.Second

// ForwardDeadline bounds a forward: the longest destination timeout and
// RequestDeadline for the vault's own work around it. The exchange itself
// and the recording of its outcome run to their end even past it.
const ForwardDeadline = forwarding.MaxTimeout + RequestDeadline

// withDeadline gives every request's context RequestDeadline, and a
// forward's ForwardDeadline.
func withDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		deadline := RequestDeadline
		if c.Path() == forwardPath && c.Request().Method == http.MethodPost {
			deadline = ForwardDeadline
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), deadline)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// withHeaders sets the security headers every answer carries: nothing a
// vault answers may be cached or sniffed.
func withHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		return next(c)
	}
}

// accessLog logs one line per request: method, route, status, latency
// and request id, and records the request in the metrics (WithMetrics):
// its route pattern, never its URL. Bodies and query strings are never
// logged.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		s.metrics.Start()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		elapsed := time.Since(start)
		if s.routeMetrics != nil {
			s.observe(c, elapsed)
		}
		s.log.Info("request", "request_id", requestID(c), "method", c.Request().Method,
			"route", c.Path(), "status", c.Response().Status,
			"duration_ms", float64(elapsed.Microseconds())/1000)
		return nil
	}
}

// observe records an answered request in the metrics.
func (s *Server) observe(c echo.Context, elapsed time.Duration) {
	s.metrics.Done()
	s.routeMetrics.Lookup(c.Request().Method, c.Path()).Observe(c.Response().Status, elapsed)
}

// authenticate resolves the request's API key (see apiKey) to an actor, or
// answers 401.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		a, err := s.svc.Authenticate(req.Context(), apiKey(req), requestID(c), c.RealIP())
		if err != nil {
			return err
		}
		c.Set(ctxActor, a)
		return next(c)
	}
}

// apiKey returns the API key a request presents: the X-API-Key header (any
// case), else the Authorization header as Stripe's clients send it, a
// Bearer token (stripe-go) or Basic credentials whose user name is the key
// (curl -u KEY:). It returns "" when there is none.
func apiKey(req *http.Request) string {
	if k := req.Header.Get("X-API-Key"); k != "" {
		return k
	}
	auth := req.Header.Get("Authorization")
	if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	if user, _, ok := req.BasicAuth(); ok {
		return user
	}
	return ""
}

// require answers 403 unless the authenticated actor holds scope.
func (s *Server) require(scope vault.Scope) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := s.svc.Require(c.Request().Context(), actor(c), scope); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// actor returns the authenticated actor of the request.
func actor(c echo.Context) vault.Actor {
	a, _ := c.Get(ctxActor).(vault.Actor)
	return a
}
