package httpapi

import (
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// recoverPanics turns a panic in a handler into a 500 with the one error
// shape (and the Request-Id header every answer has), and logs the panic
// value and stack at error level, both through the PAN mask so that a card
// number in a panic value or message cannot reach the log. http.ErrAbortHandler
// is passed on: it is net/http's way to abort a response.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler { //nolint:errorlint // the sentinel itself is the panic value
				panic(p)
			}
			s.log.Error("panic serving a request", "request_id", requestID(c),
				"method", c.Request().Method, "route", c.Path(),
				"panic", card.MaskPANs(fmt.Sprint(p)), "stack", card.MaskPANs(string(debug.Stack())))
			err = vault.Internal(errPanic)
		}()
		return next(c)
	}
}

// errPanic is the cause of the 500 a recovered panic answers; the panic
// value itself is logged (masked) once, by recoverPanics.
var errPanic = fmt.Errorf("handler panicked (logged above with its stack)")
