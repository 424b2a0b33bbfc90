package httpapi

import (
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// TLSOptions says how the server is reached when it is served over TLS.
type TLSOptions struct {
	// ClientCertForKeys makes the key-management routes (/keys…) require a
	// client certificate that the TLS layer verified against the configured
	// client CA, on top of an API key holding keys:manage.
	ClientCertForKeys bool
}

// hstsValue asks browsers to use HTTPS only, for two years, subdomains
// included.
const hstsValue = "max-age=63072000; includeSubDomains"

// WithTLS tells the server it is served over TLS: every answer carries
// Strict-Transport-Security, and with ClientCertForKeys the key routes
// answer 403 without a verified client certificate. Never use it for a
// plain-HTTP server: HSTS must only come over TLS.
func WithTLS(o TLSOptions) Option {
	return func(s *Server) {
		s.tls = o
		s.echo.Use(withHSTS)
	}
}

// withHSTS sets Strict-Transport-Security on every answer.
func withHSTS(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Strict-Transport-Security", hstsValue)
		return next(c)
	}
}

// admin is the middleware of a key-management route: a verified client
// certificate first when ClientCertForKeys is on, then auth(scope, query).
func (s *Server) admin(scope vault.Scope, query []string) []echo.MiddlewareFunc {
	if !s.tls.ClientCertForKeys {
		return s.auth(scope, query)
	}
	return append([]echo.MiddlewareFunc{requireClientCert}, s.auth(scope, query)...)
}

// requireClientCert answers 403 (client_certificate_required) unless the
// TLS layer verified a client certificate for this connection.
func requireClientCert(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if st := c.Request().TLS; st == nil || len(st.VerifiedChains) == 0 {
			return &vault.Error{Kind: vault.KindForbidden, Code: "client_certificate_required",
				Message: "this route requires a TLS client certificate issued by the vault's client CA"}
		}
		return next(c)
	}
}
