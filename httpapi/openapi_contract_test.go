package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/cardvault/cardvault/httpapi"
)

// The OpenAPI contract of the test suite: every answer any test server of
// this package sends is validated against httpapi/openapi.yaml (and the
// test-only routes against testdata/openapi_test_routes.yaml), so that a
// field, a status or a header a handler answers without the document
// saying so fails the test that received it.

// loadDoc returns the OpenAPI document data, loaded and validated. It
// returns an error naming what is wrong.
func loadDoc(data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("loading the OpenAPI document: %w", err)
	}
	if err := doc.Validate(loader.Context, docValidation...); err != nil {
		return nil, fmt.Errorf("validating the OpenAPI document: %w", err)
	}
	return doc, nil
}

// docValidation is how strictly the documents are validated: examples,
// defaults, formats and patterns included.
var docValidation = []openapi3.ValidationOption{openapi3.EnableExamplesValidation(),
	openapi3.EnableSchemaDefaultsValidation(), openapi3.EnableSchemaFormatValidation(),
	openapi3.EnableSchemaPatternValidation(), openapi3.EnableMultiError()}

// apiDoc and testRoutesDoc are the two documents, loaded once.
var (
	apiDoc        = sync.OnceValues(func() (*openapi3.T, error) { return loadDoc(httpapi.OpenAPIYAML) })
	testRoutesDoc = sync.OnceValues(func() (*openapi3.T, error) {
		b, err := os.ReadFile(filepath.Join("testdata", "openapi_test_routes.yaml"))
		if err != nil {
			return nil, err
		}
		return loadDoc(b)
	})
)

// contract holds answers to the documents.
type contract struct {
	api, test *openapi3.T
	report    func(error) // called with each answer that breaks the contract
}

// newContract returns the contract of the two documents, reporting
// breaches to report. It fails tb when a document does not load.
func newContract(tb testing.TB, report func(error)) *contract {
	tb.Helper()
	api, err := apiDoc()
	if err != nil {
		tb.Fatal(err)
	}
	test, err := testRoutesDoc()
	if err != nil {
		tb.Fatal(err)
	}
	return &contract{api: api, test: test, report: report}
}

// validated returns h with every answer checked against the OpenAPI
// documents; an answer that breaks them fails tb (from any goroutine).
func validated(tb testing.TB, h http.Handler) http.Handler {
	tb.Helper()
	c := newContract(tb, func(err error) { tb.Errorf("OpenAPI contract: %v", err) })
	return c.wrap(h)
}

// wrap returns h with its answers passed through unchanged and then
// checked.
func (c *contract) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &teeWriter{ResponseWriter: w}
		h.ServeHTTP(tw, r)
		if err := c.check(r, tw.answer()); err != nil {
			c.report(fmt.Errorf("%s %s answered %d: %w\nbody: %.600s", r.Method, r.URL.Path, tw.status, err, tw.body.Bytes()))
		}
	})
}

// answer is a response as the client received it.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// teeWriter passes an answer through and keeps a copy of it.
type teeWriter struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status, w.header = code, w.ResponseWriter.Header().Clone()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// answer returns what was sent; a handler that wrote nothing sent 200.
func (w *teeWriter) answer() answer {
	if w.status == 0 {
		return answer{status: http.StatusOK, header: w.ResponseWriter.Header().Clone()}
	}
	return answer{status: w.status, header: w.header, body: w.body.Bytes()}
}

// check validates a's status, headers and body against the operation the
// request was routed to: the API document's, else the test routes'. A
// request no operation takes must have been answered 404 route_not_found
// (no path matches) or 405 method_not_allowed (a path matches, not with
// this method), in the shapes the API document gives those.
func (c *contract) check(r *http.Request, a answer) error {
	route, params, err := findRoute(c.api, r)
	if err == routers.ErrPathNotFound {
		route, params, err = findRoute(c.test, r)
		if err == routers.ErrPathNotFound {
			route, err = c.refusal(r, "RouteNotFound", http.StatusNotFound), nil
		}
	}
	if err == routers.ErrMethodNotAllowed {
		route, err = c.refusal(r, "MethodNotAllowed", http.StatusMethodNotAllowed), nil
	}
	if err != nil {
		return err
	}
	return validateAnswer(r, route, params, a)
}

// refusal is a route whose one answer is the API document's shared
// response name with status.
func (c *contract) refusal(r *http.Request, name string, status int) *routers.Route {
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(status, c.api.Components.Responses[name]))
	return &routers.Route{Spec: c.api, Path: r.URL.Path, Method: r.Method, Operation: op}
}

// validateAnswer runs openapi3filter.ValidateResponse on a with undocumented
// statuses refused, and checks that a status documented without content
// came without a body. A HEAD answer is checked as its GET's without the
// body (ValidateResponse skips HEAD).
func validateAnswer(r *http.Request, route *routers.Route, params map[string]string, a answer) error {
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	req := r
	if r.Method == http.MethodHead {
		req = r.Clone(context.Background())
		req.Method = http.MethodGet
		opts.ExcludeResponseBody = true
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 a.status, Header: a.header, Options: opts,
	}
	in.SetBodyBytes(a.body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return err
	}
	if resp := route.Operation.Responses.Status(a.status); resp != nil && len(resp.Value.Content) == 0 && len(a.body) > 0 {
		return fmt.Errorf("status %d is documented without a body, but one came", a.status)
	}
	return nil
}

// findRoute returns the operation of doc that r's method and path name,
// chosen as echo's router does: a literal path segment wins over a
// parameter, from the left; a path that matches with another method only
// is routers.ErrMethodNotAllowed, none routers.ErrPathNotFound. HEAD finds
// the GET operation.
func findRoute(doc *openapi3.T, r *http.Request) (*routers.Route, map[string]string, error) {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	var best *routers.Route
	var bestParams map[string]string
	pathMatched := false
	for path, item := range doc.Paths.Map() {
		params, ok := matchPath(path, r.URL.Path)
		if !ok {
			continue
		}
		pathMatched = true
		op := item.GetOperation(method)
		if op == nil || (best != nil && !moreLiteral(path, best.Path)) {
			continue
		}
		best = &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op}
		bestParams = params
	}
	switch {
	case best != nil:
		return best, bestParams, nil
	case pathMatched:
		return nil, nil, routers.ErrMethodNotAllowed
	}
	return nil, nil, routers.ErrPathNotFound
}

// matchPath matches a request path against a path template ("/tokens/{id}"),
// returning the template's parameters.
func matchPath(template, path string) (map[string]string, bool) {
	ts, ps := strings.Split(template, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return nil, false
	}
	params := map[string]string{}
	for i, t := range ts {
		if name, ok := templateParam(t); ok && ps[i] != "" {
			params[name] = ps[i]
			continue
		}
		if t != ps[i] {
			return nil, false
		}
	}
	return params, true
}

// templateParam returns the name of a "{name}" path segment.
func templateParam(segment string) (string, bool) {
	if len(segment) > 2 && segment[0] == '{' && segment[len(segment)-1] == '}' {
		return segment[1 : len(segment)-1], true
	}
	return "", false
}

// moreLiteral reports whether template a has a literal segment where b has
// a parameter, at the first position where they differ in kind.
func moreLiteral(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := range min(len(as), len(bs)) {
		_, ap := templateParam(as[i])
		_, bp := templateParam(bs[i])
		if ap != bp {
			return bp
		}
	}
	return false
}
