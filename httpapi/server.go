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

// Service is what the HTTP API needs of the vault: the role interfaces of
// its resources. vault/postgres.Service implements it.
type Service interface {
	vault.Tokens
	vault.Imports
	vault.Webhooks
	vault.Keys
	vault.AuditLog
	vault.APIKeys
	vault.Idempotency
	vault.Health
}

// Server serves the vault's HTTP API.
type Server struct {
	svc  Service
	log  *slog.Logger
	echo *echo.Echo
	keys KeyConfig
	tls  TLSOptions // how the server is reached over TLS (WithTLS)
	// safety holds the rate limits and the in-flight cap (see WithLimits).
	safety requestSafety
	// importWaker is woken when an import job is created (WithImportWaker).
	importWaker Waker
}

// Option configures a Server.
type Option func(*Server)

// New returns a Server for svc whose routes are all registered.
func New(svc Service, log *slog.Logger, opts ...Option) *Server {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = errorHandler(log)
	s := &Server{svc: svc, log: log, echo: e, keys: KeyConfig{Cryptoperiod: 365 * 24 * time.Hour}}
	for _, o := range opts {
		o(s)
	}
	e.Use(withRequestID, withHeaders, withAccessLog(log), s.recoverPanics, s.limitInflight, withDeadline)
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

	e.POST("/tokens/imports", s.createImport, s.auth(vault.ScopeImportsWrite)...)
	e.GET("/tokens/imports", s.listImports, s.auth(vault.ScopeImportsRead)...)
	e.GET("/tokens/imports/:id", s.getImport, s.auth(vault.ScopeImportsRead)...)
	e.GET("/tokens/imports/:id/items", s.listImportItems, s.auth(vault.ScopeImportsRead)...)
	e.POST("/tokens/imports/:id/abort", s.abortImport, s.auth(vault.ScopeImportsWrite)...)

	e.PUT("/webhook", s.putWebhook, s.auth(vault.ScopeWebhooksManage)...)
	e.GET("/webhook", s.getWebhook, s.auth(vault.ScopeWebhooksManage)...)
	e.DELETE("/webhook", s.deleteWebhook, s.auth(vault.ScopeWebhooksManage)...)
	e.GET("/webhook/deliveries", s.listWebhookDeliveries, s.auth(vault.ScopeWebhooksManage)...)

	e.GET("/keys", s.keyStatus, s.admin(vault.ScopeKeysManage)...)
	e.POST("/keys/rotate", s.rotateKey, s.admin(vault.ScopeKeysManage)...)
	e.POST("/keys/reencrypt", s.startReencrypt, s.admin(vault.ScopeKeysManage)...)
	e.GET("/keys/jobs/:id", s.getKeyJob, s.admin(vault.ScopeKeysManage)...)
	e.POST("/keys/retire", s.retireKey, s.admin(vault.ScopeKeysManage)...)
}

// auth is the middleware of an API route: the client address's
// failed-authentication budget, a valid API key within its rate limit,
// holding scope; then Idempotency-Key handling for POSTs.
func (s *Server) auth(scope vault.Scope) []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{s.limitAuthFailures, s.authenticate, s.limitKey, s.require(scope), s.idempotent(scope)}
}
