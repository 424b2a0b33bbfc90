package httpapi

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/httpapi/console"
)

// WithConsole serves the operator console (package console) at /console
// with o. The console takes the server's key settings (WithKeyConfig), its
// client-certificate rule for key routes (WithTLS), its import waker, its
// logger, and shares its failed-authentication budget (WithLimits), so
// those fields of o are filled in whatever the order of the options.
func WithConsole(o console.Options) Option {
	return func(s *Server) { s.consoleOpts = &o }
}

// mountConsole registers the console under /console when WithConsole asked
// for it. It is not in the route table: the console answers HTML, checks
// its own session and CSRF token, and routes its own paths.
func (s *Server) mountConsole() {
	if s.consoleOpts == nil {
		return
	}
	o := *s.consoleOpts
	o.RootKEKURI, o.Cryptoperiod, o.Propagation = s.keys.RootKEKURI, s.keys.Cryptoperiod, s.keys.Propagation
	o.ClientCertForKeys = s.tls.ClientCertForKeys
	if s.importWaker != nil {
		o.ImportWaker = s.importWaker
	}
	if s.safety.authFails != nil {
		o.Throttle = authThrottle{s}
	}
	o.Logger = s.log
	h := console.New(s.svc, o)
	serve := func(c echo.Context) error {
		r := c.Request()
		h.ServeHTTP(c.Response(), r.WithContext(console.WithRequest(r.Context(), requestID(c), c.RealIP())))
		return nil
	}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		s.echo.Add(m, console.Path, serve)
		s.echo.Add(m, console.Path+"/*", serve)
	}
}

// authThrottle is the failed-authentication budget of client addresses
// (see limitAuthFailures) as the console's sign-in sees it.
type authThrottle struct{ s *Server }

// Allow reports whether addr has budget left, or how long it must wait.
func (t authThrottle) Allow(addr string) (time.Duration, bool) {
	b, now := t.s.safety.authFails, t.s.safety.clock()
	if l := b.peek(addr); l != nil && l.TokensAt(now) < 1 {
		return b.wait(l, now), false
	}
	return 0, true
}

// Failed charges a failed sign-in to addr.
func (t authThrottle) Failed(addr string) {
	t.s.safety.authFails.take(addr, t.s.safety.clock())
}
