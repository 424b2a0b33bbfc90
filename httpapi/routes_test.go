package httpapi_test

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
)

// routes returns the server's route table.
func (ts *testServer) routes(t *testing.T) []httpapi.RouteInfo {
	t.Helper()
	require.NotNil(t, ts.srv, "the test server serves an *httpapi.Server")
	return ts.srv.Routes()
}

// withIDs fills a route path's :id with id.
func withIDs(path, id string) string {
	return strings.ReplaceAll(path, ":id", id)
}

// sampleValue is a value each query parameter takes.
func sampleValue(param string) string {
	switch param {
	case "limit":
		return "5"
	case "status":
		return "failed"
	case "business_key":
		return "pm_x"
	}
	return "1"
}

func TestUnknownAndRepeatedQueryParametersAreRefusedOnEveryRoute(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	for _, r := range ts.routes(t) {
		path := withIDs(r.Path, uuid.NewString())
		tests := []struct {
			name, query, code, param string
		}{
			{"misspelt parameter", "businesskey=pm_1", "parameter_unknown", "businesskey"},
			{"unknown parameter", "foo=1", "parameter_unknown", "foo"},
			{"unknown parameter without a value", "pretty", "parameter_unknown", "pretty"},
			{"unknown after a known one", strings.Join(append(slices.Clone(r.Query), "zzz"), "=1&") + "=1", "parameter_unknown", "zzz"},
			{"two unknown, the first named", "b=1&a=1", "parameter_unknown", "a"},
			{"malformed escape", "a=%zz", "parameter_invalid", ""},
		}
		for _, q := range r.Query {
			tests = append(tests, struct{ name, query, code, param string }{
				"repeated " + q, q + "=" + sampleValue(q) + "&" + q + "=" + sampleValue(q), "parameter_invalid", q})
		}
		for _, tt := range tests {
			t.Run(r.Method+" "+r.Path+" "+tt.name, func(t *testing.T) {
				res := ts.do(t, r.Method, path+"?"+tt.query, key, "")
				require.Equal(t, http.StatusBadRequest, res.status, "body: %s", res.body)
				e := errorOf(t, res)
				assert.Equal(t, "invalid_request_error", e["type"])
				assert.Equal(t, tt.code, e["code"])
				if tt.param != "" {
					assert.Equal(t, tt.param, e["param"])
					assert.Contains(t, e["message"], tt.param, "the message names the parameter")
				}
			})
		}
		t.Run(r.Method+" "+r.Path+" takes its own parameters", func(t *testing.T) {
			vals := url.Values{}
			for _, q := range r.Query {
				vals.Set(q, sampleValue(q))
			}
			res := ts.do(t, r.Method, path+"?"+vals.Encode(), key, "")
			if res.status >= 400 { // refused by the handler for what the values name, not by the query check
				e := errorOf(t, res)
				assert.NotEqual(t, "parameter_unknown", e["code"], "body: %s", res.body)
				assert.NotContains(t, e["message"], "times", "body: %s", res.body)
			}
		})
	}
}

func TestAMisspeltFilterIsRefusedNotIgnored(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	ts.do(t, http.MethodPost, "/tokens", key, cardBody("pm_typo", "4242424242424242"))
	res := ts.do(t, http.MethodGet, "/tokens?businesskey=pm_other", key, "")
	require.Equal(t, http.StatusBadRequest, res.status, "body: %s", res.body)
	e := errorOf(t, res)
	assert.Equal(t, "parameter_unknown", e["code"])
	assert.Equal(t, "businesskey", e["param"])
	assert.Contains(t, e["message"], "business_key", "the message lists what the route takes")
	assert.NotContains(t, string(res.body), "pm_other", "values are not echoed")
}

// methods are the methods tried on every path.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodTrace}

func TestWrongMethodsAnswer405WithAllow(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	allowed := map[string][]string{} // path → its methods
	for _, r := range ts.routes(t) {
		allowed[r.Path] = append(allowed[r.Path], r.Method)
		if r.Method == http.MethodGet {
			allowed[r.Path] = append(allowed[r.Path], http.MethodHead)
		}
	}
	for path, ms := range allowed {
		want := append([]string{http.MethodOptions}, ms...)
		slices.Sort(want)
		for _, m := range methods {
			if slices.Contains(ms, m) || routedElsewhere(allowed, path, m) {
				continue
			}
			t.Run(m+" "+path, func(t *testing.T) {
				res := ts.do(t, m, withIDs(path, uuid.NewString()), key, "")
				require.Equal(t, http.StatusMethodNotAllowed, res.status, "body: %s", res.body)
				got := strings.Split(res.header.Get("Allow"), ", ")
				slices.Sort(got)
				assert.Equal(t, want, got, "Allow lists the route's methods")
				if m == http.MethodHead {
					assert.Empty(t, res.body)
					return
				}
				e := errorOf(t, res)
				assert.Equal(t, "method_not_allowed", e["code"])
				assert.Equal(t, "invalid_request_error", e["type"])
			})
		}
	}
}

// routedElsewhere reports whether another pattern of allowed matches path
// (as a request path) and takes method: DELETE /tokens/imports is
// DELETE /tokens/:id with the id "imports".
func routedElsewhere(allowed map[string][]string, path, method string) bool {
	for pattern, ms := range allowed {
		if pattern != path && slices.Contains(ms, method) && matches(pattern, path) {
			return true
		}
	}
	return false
}

// matches reports whether path fits pattern segment by segment, a :param
// segment fitting any one segment.
func matches(pattern, path string) bool {
	ps, qs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(qs) {
		return false
	}
	for i := range ps {
		if ps[i] != qs[i] && !strings.HasPrefix(ps[i], ":") {
			return false
		}
	}
	return true
}

func TestHEADAnswersLikeGETWithoutABody(t *testing.T) {
	ts := newTestServer(t)
	f := newTenantFixture(t, ts)
	ids := map[string]string{"/tokens/:id": f.token, "/tokens/:id/versions": f.token, "/tokens/imports/:id": f.importJob,
		"/tokens/imports/:id/items": f.importJob, "/keys/jobs/:id": f.keyJob,
		"/forwarding/destinations/:id": f.destination, "/v1/forwarding/requests/:id": f.forward,
		"/tokens/exports/:id": f.exportJob, "/tokens/exports/:id/items": f.exportJob,
		"/tokens/exports/:id/mapping": f.exportJob}
	// A file import's mapping: the Stripe import ends first (one active import
	// per tenant); the upload is verified only when a worker runs it.
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodPost, "/tokens/imports/"+f.importJob+"/abort", f.key, "").status)
	upload := ts.upload(t, f.key, fileFields, []byte("an encrypted card file"))
	require.Equal(t, http.StatusAccepted, upload.status, "%s", upload.body)
	ids["/tokens/imports/:id/mapping"] = upload.json(t)["id"].(string)
	for _, r := range ts.routes(t) {
		if r.Method != http.MethodGet {
			continue
		}
		path := withIDs(r.Path, ids[r.Path])
		if r.Path == "/audit-events" { // a page that the listing's own audit rows do not move
			path += "?limit=1&starting_after=" + strconv.FormatInt(f.auditEvent, 10)
		}
		t.Run(path, func(t *testing.T) {
			get := ts.do(t, http.MethodGet, path, f.key, "")
			head := ts.do(t, http.MethodHead, path, f.key, "")
			require.Equal(t, http.StatusOK, get.status, "body: %s", get.body)
			assert.Equal(t, get.status, head.status)
			assert.Empty(t, head.body)
			for _, h := range []http.Header{get.header, head.header} {
				h.Del("Date")
				h.Del(httpapi.HeaderRequestID)
			}
			assert.Equal(t, get.header, head.header)
			assert.Equal(t, strconv.Itoa(len(get.body)), head.header.Get("Content-Length"))
		})
	}
	t.Run("an error", func(t *testing.T) {
		path := "/tokens/" + uuid.NewString()
		get, head := ts.do(t, http.MethodGet, path, f.key, ""), ts.do(t, http.MethodHead, path, f.key, "")
		assert.Equal(t, http.StatusNotFound, head.status)
		assert.Equal(t, get.header.Get("Content-Length"), head.header.Get("Content-Length"))
		assert.Empty(t, head.body)
	})
}
