// Package console is cardvault's operator console: HTML pages served at
// /console by the same binary, rendered on the server with html/template,
// with their stylesheet and script embedded (no CDN, no build step).
//
// An operator signs in with an API key; the session is a server-side record
// (vault.ConsoleSessions) behind an HttpOnly, Secure, SameSite=Strict
// cookie, every form carries the session's CSRF token, and every answer
// carries a strict Content-Security-Policy. The key's scopes decide what
// each view shows and which actions it offers, and each action goes through
// the same vault method, audited as the same actor, as its API twin. The
// console never shows card data: it has no reveal.
package console

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// Service is what the console needs of the vault: the role interfaces of
// its views. vault/postgres.Service implements it.
type Service interface {
	vault.APIKeys
	vault.Keys
	vault.Imports
	vault.Webhooks
	vault.ConsoleSessions
	vault.ActivityReports
	vault.AuditSearch
	vault.TenantAPIKeys
	vault.Forwarding
	vault.Exports
}

// Throttle is the failed sign-in budget of a client address; the HTTP
// API's failed-authentication budget implements it, so that the console
// and the API share one.
type Throttle interface {
	// Allow reports whether addr may try to sign in now; when not, it
	// returns how long addr must wait.
	Allow(addr string) (time.Duration, bool)
	// Failed charges a failed sign-in to addr.
	Failed(addr string)
}

// Waker is told when an import job was created, so that idle import
// workers start at once.
type Waker interface{ Wake() }

// DefaultLife is how long a console session lasts when Options.Life is
// zero: 8 hours at most, and 15 minutes without a page view (PCI DSS
// 8.2.8).
var DefaultLife = vault.SessionLife{TTL: 8 * time.Hour, Idle: 15 * time.Minute}

// Options configures a Console. Every field is optional.
type Options struct {
	// Life bounds sessions; DefaultLife when zero.
	Life vault.SessionLife
	// RootKEKURI is shown redacted on the keys view; Cryptoperiod flags
	// keys overdue; Propagation is how long a rotation waits for every
	// replica to reload keys (as in the API's key routes).
	RootKEKURI   string
	Cryptoperiod time.Duration
	Propagation  time.Duration
	// ClientCertForKeys makes the keys views, like the API's key routes,
	// require a TLS client certificate the server verified.
	ClientCertForKeys bool
	// ImportWaker is woken when the console starts an import.
	ImportWaker Waker
	// Throttle limits failed sign-ins per address; none when nil.
	Throttle Throttle
	// Logger logs failures (never card data, never secrets);
	// slog.Default() when nil.
	Logger *slog.Logger
}

// Console serves the operator console; it is an http.Handler for the paths
// under /console.
type Console struct {
	svc   Service
	opts  Options
	log   *slog.Logger
	pages pages
	mux   *http.ServeMux
}

// New returns the console of svc.
func New(svc Service, o Options) *Console {
	if o.Life == (vault.SessionLife{}) {
		o.Life = DefaultLife
	}
	if o.Cryptoperiod <= 0 {
		o.Cryptoperiod = 365 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Console{svc: svc, opts: o, log: o.Logger, pages: parsePages(), mux: http.NewServeMux()}
	c.routes()
	return c
}

// ServeHTTP serves a request for a path under /console, with the security
// headers every console answer carries.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows only the console's own files: no inline
// script or style, no framing, forms posting only to the console.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// Path is where the console is served.
const Path = "/console"

// routes registers every page, action and asset.
func (c *Console) routes() {
	m := c.mux
	m.Handle("GET "+Path+"/assets/", assetHandler())
	m.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Path+"/", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+Path+"/login", c.loginPage)
	m.HandleFunc("POST "+Path+"/login", c.signIn)
	m.HandleFunc("POST "+Path+"/logout", c.action("", c.signOut))
	m.HandleFunc("GET "+Path+"/{$}", c.page("", c.overview))
	c.keyRoutes()
	c.importRoutes()
	c.auditRoutes()
	m.HandleFunc("GET "+Path+"/webhooks", c.page(vault.ScopeWebhooksManage, c.webhooks))
	c.apiKeyRoutes()
	c.forwardingRoutes()
	c.exportRoutes()
	m.HandleFunc(Path+"/", c.page("", func(q *request) error {
		return vault.Errorf(vault.KindNotFound, vault.CodeRouteNotFound, "there is no such page in the console")
	}))
}

// requestKey keys the request's id and client address in a context.
type requestKey struct{}

type requestInfo struct{ id, addr string }

// WithRequest returns ctx carrying the request's id and client address, as
// the server that mounts the console determined them; the console audits
// its actions with them.
func WithRequest(ctx context.Context, requestID, clientAddr string) context.Context {
	return context.WithValue(ctx, requestKey{}, requestInfo{requestID, clientAddr})
}

// requestOf returns the request id and client address WithRequest set, or
// no id and the peer's address.
func requestOf(r *http.Request) (string, string) {
	if ri, ok := r.Context().Value(requestKey{}).(requestInfo); ok {
		return ri.id, ri.addr
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "", r.RemoteAddr
	}
	return "", host
}
