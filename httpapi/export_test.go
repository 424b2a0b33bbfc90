package httpapi

import (
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// AddTestRoute registers one more route behind the API middleware of scope
// (authentication, rate limit, scope, idempotency), on top of the in-flight
// cap and panic recovery. It exists in test builds only, so routes that
// panic or block never reach the production route table.
func (s *Server) AddTestRoute(method, path string, scope vault.Scope, h echo.HandlerFunc) {
	s.echo.Add(method, path, h, s.auth(scope, nil)...)
}

// RouteInfo is one entry of the route table as tests see it.
type RouteInfo struct {
	Method, Path string
	Query        []string // the query parameters it takes
	Scope        vault.Scope
}

// Routes returns the route table, so that tests cover every route.
func (s *Server) Routes() []RouteInfo {
	var out []RouteInfo
	for _, r := range s.routeTable() {
		out = append(out, RouteInfo{Method: r.method, Path: r.path, Query: r.query, Scope: r.scope})
	}
	return out
}

// OpenAPIYAML is the embedded OpenAPI document.
var OpenAPIYAML = openAPIYAML

// YAMLToJSON converts a YAML document as GET /openapi.json does.
var YAMLToJSON = yamlToJSON

// EchoRoutes returns the routes echo serves: what the router holds, not
// what the route table says.
func (s *Server) EchoRoutes() []*echo.Route {
	return s.echo.Routes()
}

// FairSlots exposes the in-flight cap's sharing to tests.
type FairSlots struct{ f *fairSlots }

// NewFairSlotsForTest returns an in-flight cap of n slots.
func NewFairSlotsForTest(n int) FairSlots { return FairSlots{newFairSlots(n)} }

// Acquire takes a slot for holder h, or reports false.
func (s FairSlots) Acquire(h string) bool { return s.f.acquire(h) }
