package httpapi

import (
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// page is the envelope of every cursor-paginated list, Stripe's list
// object: {"object":"list","data":[…],"has_more":…}.
type page[T any] struct {
	Object  string `json:"object"`
	Data    []T    `json:"data"`
	HasMore bool   `json:"has_more"`
}

// respondList answers 200 with the list object of items, each shown by
// view: the one way every list route answers.
func respondList[I, T any](c echo.Context, items []I, hasMore bool, view func(I) T) error {
	out := page[T]{Object: "list", Data: make([]T, 0, len(items)), HasMore: hasMore}
	for _, it := range items {
		out.Data = append(out.Data, view(it))
	}
	return c.JSON(http.StatusOK, out)
}

// Query parameters every list route takes.
const (
	paramLimit         = "limit"
	paramStartingAfter = "starting_after"
)

// defaultLimit is the page size of a list request without limit.
const defaultLimit = 10

// paging is what a list request asks for: a page size, and the cursor to
// start after (the zero value when absent).
type paging[C any] struct {
	limit int
	after C
}

// readPaging reads limit (defaultLimit when absent or empty) and
// starting_after, which parseCursor turns into the list's cursor. It returns
// vault.InvalidLimit or vault.InvalidCursor for a value that does not parse,
// so every list answers a bad one alike.
func readPaging[C any](c echo.Context, parseCursor func(string) (C, bool)) (paging[C], error) {
	p := paging[C]{limit: defaultLimit}
	if v := c.QueryParam(paramLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return p, vault.InvalidLimit()
		}
		p.limit = n
	}
	if v := c.QueryParam(paramStartingAfter); v != "" {
		var ok bool
		if p.after, ok = parseCursor(v); !ok {
			return p, vault.InvalidCursor()
		}
	}
	return p, nil
}

// idCursor parses a starting_after that is an object's id (a token, an
// import job); the nil UUID names nothing.
func idCursor(v string) (uuid.UUID, bool) {
	id, ok := canonicalID(v)
	return id, ok && id != uuid.Nil
}

// canonicalID parses v when it is a UUID in its one canonical spelling, the
// one the API answers with (36 lower-case characters with hyphens); any
// other form uuid.Parse would take (urn:uuid:…, braces, no hyphens, upper
// case) is refused, so that an id names an object one way only.
func canonicalID(v string) (uuid.UUID, bool) {
	id, err := uuid.Parse(v)
	return id, err == nil && id.String() == v
}

// seqCursor parses a starting_after that is a position in a list numbered
// from 1 (an audit event id, a delivery attempt id, a ledger seq).
func seqCursor(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}
