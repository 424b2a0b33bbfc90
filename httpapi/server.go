// Package httpapi is cardvault's HTTP interface: routing, authentication,
// request and response types, and the one mapping of domain errors to HTTP.
package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/httpapi/console"
	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// Service is what the HTTP API needs of the vault: the role interfaces of
// its resources. vault/postgres.Service implements it.
type Service interface {
	vault.Tokens
	vault.TokenSearch
	vault.Imports
	vault.FileImports
	vault.Webhooks
	vault.Keys
	vault.AuditLog
	vault.Forwarding
	vault.APIKeys
	vault.Idempotency
	vault.Health
	console.Service
	vault.Exports
	vault.AccessFailures
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
	// exportWaker is woken when an export job is created (WithExportWaker).
	exportWaker Waker
	// importFileMax caps an uploaded card file (WithImportFileLimit).
	importFileMax int64
	// consoleOpts turns the operator console on (WithConsole).
	consoleOpts *console.Options
	// metrics records requests and refusals (WithMetrics); routeMetrics
	// holds its recorder of each route, resolved once the routes are
	// registered. Both nil without metrics.
	metrics      *metrics.HTTP
	routeMetrics *metrics.RouteTable
	// ready caches /readyz's answer for a second.
	ready readiness
}

// Option configures a Server.
type Option func(*Server)

// New returns a Server for svc whose routes are all registered.
func New(svc Service, log *slog.Logger, opts ...Option) *Server {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = echo.ExtractIPDirect()
	s := &Server{svc: svc, log: log, echo: e, keys: KeyConfig{Cryptoperiod: 365 * 24 * time.Hour}}
	for _, o := range opts {
		o(s)
	}
	e.HTTPErrorHandler = s.errorHandler
	e.Use(withRequestID, withHeaders, s.accessLog, s.auditRefusals, s.recoverPanics, s.limitInflight, withDeadline)
	s.routes()
	s.routeMetrics = s.metrics.Routes(routePatterns(e))
	return s
}

// WithMetrics records every request (by route pattern, method and status)
// and every refusal of the rate limits and the in-flight cap in m.
func WithMetrics(m *metrics.HTTP) Option {
	return func(s *Server) { s.metrics = m }
}

// routePatterns returns every method and route pattern e serves.
func routePatterns(e *echo.Echo) []metrics.Pattern {
	var out []metrics.Pattern
	for _, r := range e.Routes() {
		out = append(out, metrics.Pattern{Method: r.Method, Path: r.Path})
	}
	return out
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.echo.ServeHTTP(w, r)
}

// route is one entry of the route table.
type route struct {
	method, path string
	handler      echo.HandlerFunc
	scope        vault.Scope // what the API key must hold; "" for the unauthenticated probes
	admin        bool        // a key-management route (see admin)
	query        []string    // the query parameters it takes; any other is refused
}

// listQuery returns the query parameters of a list route: limit,
// starting_after and the list's own filters.
func listQuery(filters ...string) []string {
	return append([]string{paramLimit, paramStartingAfter}, filters...)
}

// routeTable is every route with the scope and query parameters it takes,
// in one place.
func (s *Server) routeTable() []route {
	const get, post, put, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return []route{
		{get, "/healthz", s.healthz, "", false, nil},
		{get, "/readyz", s.readyz, "", false, nil},
		{get, "/openapi.json", s.openAPI, "", false, nil},

		{post, "/cde-import", s.createToken, vault.ScopeTokensCreate, false, nil},
		{post, "/tokens", s.createToken, vault.ScopeTokensCreate, false, nil},
		{get, "/tokens", s.listTokens, vault.ScopeTokensRead, false, listQuery(paramBusinessKey, paramFingerprint)},
		{post, "/tokens/search", s.searchTokens, vault.ScopeTokensSearch, false, listQuery()},
		{get, "/tokens/:id", s.getToken, vault.ScopeTokensRead, false, nil},
		{get, "/tokens/:id/versions", s.listTokenVersions, vault.ScopeTokensRead, false, nil},
		{post, "/tokens/:id/detokenize", s.detokenize, vault.ScopeTokensReveal, false, nil},
		{del, "/tokens/:id", s.deleteToken, vault.ScopeTokensDelete, false, nil},
		{get, "/audit-events", s.listAuditEvents, vault.ScopeAuditRead, false, listQuery()},

		{post, "/tokens/imports", s.createImport, vault.ScopeImportsWrite, false, nil},
		{get, "/tokens/imports", s.listImports, vault.ScopeImportsRead, false, listQuery()},
		{get, "/tokens/imports/:id", s.getImport, vault.ScopeImportsRead, false, nil},
		{get, "/tokens/imports/:id/items", s.listImportItems, vault.ScopeImportsRead, false, listQuery("status")},
		{post, "/tokens/imports/:id/abort", s.abortImport, vault.ScopeImportsWrite, false, nil},
		{get, "/tokens/imports/:id/mapping", s.importMapping, vault.ScopeImportsRead, false, nil},

		{post, "/tokens/exports", s.createExport, vault.ScopeExportsWrite, false, nil},
		{get, "/tokens/exports", s.listExports, vault.ScopeExportsRead, false, listQuery()},
		{get, "/tokens/exports/:id", s.getExport, vault.ScopeExportsRead, false, nil},
		{get, "/tokens/exports/:id/items", s.listExportItems, vault.ScopeExportsRead, false, listQuery("status")},
		{post, "/tokens/exports/:id/abort", s.abortExport, vault.ScopeExportsWrite, false, nil},
		{get, "/tokens/exports/:id/mapping", s.exportMapping, vault.ScopeExportsRead, false, nil},

		{put, "/webhook", s.putWebhook, vault.ScopeWebhooksManage, false, nil},
		{get, "/webhook", s.getWebhook, vault.ScopeWebhooksManage, false, nil},
		{del, "/webhook", s.deleteWebhook, vault.ScopeWebhooksManage, false, nil},
		{post, "/webhook/secret/rotate", s.rotateWebhookSecret, vault.ScopeWebhooksManage, false, nil},
		{get, "/webhook/deliveries", s.listWebhookDeliveries, vault.ScopeWebhooksManage, false, listQuery()},

		{post, "/forwarding/destinations", s.createDestination, vault.ScopeForwardingManage, false, nil},
		{get, "/forwarding/destinations", s.listDestinations, vault.ScopeForwardingRead, false, nil},
		{get, "/forwarding/destinations/:id", s.getDestination, vault.ScopeForwardingRead, false, nil},
		{del, "/forwarding/destinations/:id", s.deleteDestination, vault.ScopeForwardingManage, false, nil},
		{get, "/forwarding/presets", s.listPresets, vault.ScopeForwardingRead, false, nil},
		{post, forwardPath, s.createForward, vault.ScopeTokensForward, false, nil},
		{get, forwardPath, s.listForwards, vault.ScopeForwardingRead, false, listQuery(forwardListFilters...)},
		{get, forwardPath + "/:id", s.getForward, vault.ScopeForwardingRead, false, nil},

		{get, "/keys", s.keyStatus, vault.ScopeKeysManage, true, nil},
		{post, "/keys/rotate", s.rotateKey, vault.ScopeKeysManage, true, nil},
		{post, "/keys/reencrypt", s.startReencrypt, vault.ScopeKeysManage, true, nil},
		{post, "/keys/fingerprint/rotate", s.rotateFingerprintKey, vault.ScopeKeysManage, true, nil},
		{get, "/keys/jobs/:id", s.getKeyJob, vault.ScopeKeysManage, true, nil},
		{post, "/keys/retire", s.retireKey, vault.ScopeKeysManage, true, nil},
	}
}

// routes registers the route table; a GET route answers HEAD too, like GET
// without the body (net/http drops it). A route called with a method it
// does not take answers 405 with Allow (see domainError).
func (s *Server) routes() {
	for _, r := range s.routeTable() {
		mw := s.middleware(r)
		s.echo.Add(r.method, r.path, r.handler, mw...)
		if r.method == http.MethodGet {
			s.echo.Add(http.MethodHead, r.path, r.handler, mw...)
		}
	}
	s.mountConsole()
}

// middleware is the chain of r: the query check alone for the probes,
// auth (or admin) with it otherwise.
func (s *Server) middleware(r route) []echo.MiddlewareFunc {
	switch {
	case r.scope == "":
		return []echo.MiddlewareFunc{allowQuery(r.query)}
	case r.admin:
		return s.admin(r.scope, r.query)
	}
	return s.auth(r.scope, r.query)
}

// forwardPath is Stripe's path of the ForwardingRequest API, which the
// vault serves under the same name so that a Stripe client changes only
// its base URL.
const forwardPath = "/v1/forwarding/requests"

// auth is the middleware of an API route: the client address's
// failed-authentication budget, a valid API key within its rate limit,
// holding scope; the query string holding only the parameters query; then
// Idempotency-Key handling for POSTs.
func (s *Server) auth(scope vault.Scope, query []string) []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{s.limitAuthFailures, s.authenticate, s.shareInflight, s.limitKey, s.require(scope),
		allowQuery(query), s.idempotent(scope)}
}
