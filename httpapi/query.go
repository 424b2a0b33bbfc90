package httpapi

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// maxShownParam bounds how much of a refused parameter name an answer
// echoes.
const maxShownParam = 40

// allowQuery refuses a request whose query string does not parse, holds a
// parameter outside allowed, or gives one twice, so that a misspelt filter
// is an error instead of being ignored. Each route's allowed parameters are
// declared in the route table.
func allowQuery(allowed []string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := checkQuery(c.Request().URL.RawQuery, allowed); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// checkQuery returns nil when raw, a URL's raw query, gives only allowed
// parameters, each at most once. Otherwise it returns a KindBadRequest
// error: parameter_unknown naming the first unknown parameter (in name
// order), parameter_invalid naming a repeated one, or parameter_invalid
// for a query string that does not parse. Values are never echoed, and
// names only with card numbers masked.
func checkQuery(raw string, allowed []string) error {
	if raw == "" {
		return nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid,
			Message: "the query string is malformed: give name=value pairs, percent-encoded, separated by &"}
	}
	names := slices.Sorted(maps.Keys(q))
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			return unknownParam(name, allowed)
		}
	}
	for _, name := range names {
		if n := len(q[name]); n > 1 {
			return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid, Param: name,
				Message: fmt.Sprintf("query parameter %s is given %d times; give it once", name, n)}
		}
	}
	return nil
}

// unknownParam is the parameter_unknown error of a query parameter the
// route does not take, listing those it does.
func unknownParam(name string, allowed []string) *vault.Error {
	shown := shownParam(name)
	takes := "this route takes no query parameters"
	if len(allowed) > 0 {
		takes = "this route takes " + strings.Join(allowed, ", ")
	}
	return &vault.Error{Kind: vault.KindBadRequest, Code: codeParameterUnknown, Param: shown,
		Message: fmt.Sprintf("unknown query parameter %q: %s", shown, takes)}
}

// shownParam is a parameter name fit for an answer: card numbers masked,
// at most maxShownParam runes.
func shownParam(name string) string {
	r := []rune(card.MaskPANs(name))
	if len(r) > maxShownParam {
		return string(r[:maxShownParam]) + "…"
	}
	return string(r)
}
