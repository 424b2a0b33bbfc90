// Package httpapi is cardvault's HTTP interface: routing, authentication,
// request and response types, and the one mapping of domain errors to HTTP.
package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// Server serves the vault's HTTP API.
type Server struct {
	svc  *vault.Service
	log  *slog.Logger
	echo *echo.Echo
	keys KeyConfig
}

// Option configures a Server.
type Option func(*Server)

// New returns a Server for svc whose routes are all registered.
func New(svc *vault.Service, log *slog.Logger, opts ...Option) *Server {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = errorHandler(log)
	s := &Server{svc: svc, log: log, echo: e, keys: KeyConfig{Cryptoperiod: 365 * 24 * time.Hour}}
	for _, o := range opts {
		o(s)
	}
	e.Use(withRequestID, withHeaders, withAccessLog(log))
	s.routes()
	return s
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.echo.ServeHTTP(w, r)
}

// routes registers every route with the scope it needs, in one place.
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)

	e.POST("/cde-import", s.createToken, s.auth(vault.ScopeTokensCreate)...)
	e.POST("/tokens", s.createToken, s.auth(vault.ScopeTokensCreate)...)
	e.GET("/tokens", s.listTokens, s.auth(vault.ScopeTokensRead)...)
	e.GET("/tokens/:id", s.getToken, s.auth(vault.ScopeTokensRead)...)
	e.POST("/tokens/:id/detokenize", s.detokenize, s.auth(vault.ScopeTokensReveal)...)
	e.DELETE("/tokens/:id", s.deleteToken, s.auth(vault.ScopeTokensDelete)...)
	e.GET("/audit-events", s.listAuditEvents, s.auth(vault.ScopeAuditRead)...)

	e.GET("/keys", s.keyStatus, s.auth(vault.ScopeKeysManage)...)
	e.POST("/keys/rotate", s.rotateKey, s.auth(vault.ScopeKeysManage)...)
	e.POST("/keys/reencrypt", s.startReencrypt, s.auth(vault.ScopeKeysManage)...)
	e.GET("/keys/jobs/:id", s.getKeyJob, s.auth(vault.ScopeKeysManage)...)
	e.POST("/keys/retire", s.retireKey, s.auth(vault.ScopeKeysManage)...)
}

// auth is the middleware of an API route: a valid API key holding scope.
func (s *Server) auth(scope vault.Scope) []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{s.authenticate, s.require(scope)}
}
