package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errorOf returns the error object of an error answer.
func errorOf(t *testing.T, res response) map[string]any {
	t.Helper()
	e, ok := res.json(t)["error"].(map[string]any)
	require.True(t, ok, "error shape: %s", res.body)
	return e
}

// tenantFixture is a tenant with one object in each list, and the ids
// that name them.
type tenantFixture struct {
	key, token, importJob, keyJob string
	destination, forward          string
	auditEvent                    int64
	exportJob                     string
}

// newTenantFixture makes a tenant with two tokens, an import job, a
// webhook, a key job, a forwarding destination and forward, audit events,
// and an export job.
func newTenantFixture(t *testing.T, ts *testServer) tenantFixture {
	t.Helper()
	f := tenantFixture{key: ts.key(t)}
	for _, bk := range []string{"pm_fixture_1", "pm_fixture_2"} {
		res := ts.do(t, http.MethodPost, "/tokens", f.key, cardBody(bk, "4242424242424242"))
		require.Equal(t, http.StatusCreated, res.status, "body: %s", res.body)
		f.token = res.json(t)["id"].(string)
	}
	imp := ts.do(t, http.MethodPost, "/tokens/imports", f.key, `{"provider":"stripe","stripe":{"api_key":"sk_test_fixture0"}}`)
	require.Equal(t, http.StatusAccepted, imp.status, "body: %s", imp.body)
	f.importJob = imp.json(t)["id"].(string)
	wh := ts.do(t, http.MethodPut, "/webhook", f.key, `{"url":"https://hooks.example.com/vault"}`)
	require.Equal(t, http.StatusOK, wh.status, "body: %s", wh.body)
	job := ts.do(t, http.MethodPost, "/keys/reencrypt", f.key, "")
	require.Equal(t, http.StatusAccepted, job.status, "body: %s", job.body)
	f.keyJob = job.json(t)["id"].(string)
	f.destination, f.forward = fixtureForward(t, ts, f.key)
	exp := ts.do(t, http.MethodPost, "/tokens/exports", f.key, `{"destination":"`+f.destination+`"}`)
	require.Equal(t, http.StatusAccepted, exp.status, "body: %s", exp.body)
	f.exportJob = exp.json(t)["id"].(string)
	events := ts.do(t, http.MethodGet, "/audit-events?limit=1", f.key, "").json(t)["data"].([]any)
	require.NotEmpty(t, events)
	f.auditEvent = int64(events[0].(map[string]any)["id"].(float64))
	return f
}

// fixtureForward adds a loopback destination that answers 200 and forwards
// the fixture's card there once; it returns the destination's and the
// forward's ids.
func fixtureForward(t *testing.T, ts *testServer, key string) (string, string) {
	t.Helper()
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) }))
	t.Cleanup(dest.Close)
	id := ts.addDestination(t, key, `{"url":"`+dest.URL+`/cde-import","preset":"stripe_own_vault"}`)
	res := ts.do(t, http.MethodPost, "/v1/forwarding/requests", key, `{"payment_method":"pm_fixture_1","url":"`+dest.URL+
		`/cde-import","replacements":["card_number"],"request":{"body":"{\"card\":{\"number\":\"\"}}"}}`)
	require.Equal(t, http.StatusOK, res.status, "body: %s", res.body)
	return id, res.json(t)["id"].(string)
}

// listRoute is one list of the API and a cursor that names one of its
// objects; numbered lists page by position (starting_after any number from 1).
type listRoute struct {
	path, cursor string
	numbered     bool
}

func (f tenantFixture) lists() []listRoute {
	return []listRoute{
		{"/tokens", f.token, false},
		{"/audit-events", strconv.FormatInt(f.auditEvent, 10), true},
		{"/tokens/imports", f.importJob, false},
		{"/tokens/imports/" + f.importJob + "/items", "1", true},
		{"/webhook/deliveries", "1", true},
		{"/v1/forwarding/requests", f.forward, false},
		{"/tokens/exports", f.exportJob, false},
		{"/tokens/exports/" + f.exportJob + "/items", "1", true},
	}
}

// isPosition reports whether query is a lone starting_after that a
// numbered list takes as a position.
func (l listRoute) isPosition(query string) bool {
	v, ok := strings.CutPrefix(query, "starting_after=")
	if !l.numbered || !ok {
		return false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return err == nil && n > 0
}

func TestEveryListAnswersOneShapeAndRefusesBadPagingAlike(t *testing.T) {
	ts := newTestServer(t)
	f := newTenantFixture(t, ts)
	other := newTenantFixture(t, ts)
	t.Run("one shape", func(t *testing.T) {
		for _, l := range f.lists() {
			for _, q := range []string{"", "?limit=1", "?limit=100&starting_after=" + l.cursor} {
				res := ts.do(t, http.MethodGet, l.path+q, f.key, "")
				require.Equal(t, http.StatusOK, res.status, "%s%s: %s", l.path, q, res.body)
				page := res.json(t)
				assert.Len(t, page, 3, "object, data and has_more only: %s", res.body)
				assert.Equal(t, "list", page["object"], l.path)
				assert.IsType(t, []any{}, page["data"], l.path)
				assert.IsType(t, false, page["has_more"], l.path)
			}
		}
	})
	bad := []struct {
		name, query, param string
	}{
		{"starting_after a word", "starting_after=abc", "starting_after"},
		{"starting_after zero", "starting_after=0", "starting_after"},
		{"starting_after negative", "starting_after=-1", "starting_after"},
		{"starting_after the nil id", "starting_after=" + uuid.Nil.String(), "starting_after"},
		{"starting_after an unknown id", "starting_after=" + uuid.NewString(), "starting_after"},
		{"starting_after another tenant's token", "starting_after=" + other.token, "starting_after"},
		{"starting_after another tenant's import", "starting_after=" + other.importJob, "starting_after"},
		{"starting_after a PAN", "starting_after=4242424242424242", "starting_after"},
		{"starting_after too big", "starting_after=99999999999999999999", "starting_after"},
		{"limit zero", "limit=0", "limit"},
		{"limit 101", "limit=101", "limit"},
		{"limit a word", "limit=ten", "limit"},
		{"limit a fraction", "limit=1.5", "limit"},
		{"limit twice", "limit=1&limit=2", "limit"},
		{"starting_after twice", "starting_after=1&starting_after=2", "starting_after"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			var first map[string]any
			for _, l := range f.lists() {
				res := ts.do(t, http.MethodGet, l.path+"?"+b.query, f.key, "")
				if l.isPosition(b.query) {
					assert.Equal(t, http.StatusOK, res.status, "%s?%s: a positive number is a position in %s", l.path, b.query, l.path)
					continue
				}
				require.Equal(t, http.StatusBadRequest, res.status, "%s?%s: %s", l.path, b.query, res.body)
				e := errorOf(t, res)
				assert.Equal(t, "parameter_invalid", e["code"], l.path)
				assert.Equal(t, b.param, e["param"], l.path)
				assert.NotContains(t, string(res.body), "4242424242424242")
				if first == nil {
					first = e
					continue
				}
				assert.Equal(t, first, e, "%s answers like %s", l.path, f.lists()[0].path)
			}
		})
	}
	t.Run("ending_before is not taken", func(t *testing.T) {
		for _, l := range f.lists() {
			if l.path == "/v1/forwarding/requests" {
				continue // Stripe's ForwardingRequest list takes it, as stripe-go sends it
			}
			res := ts.do(t, http.MethodGet, l.path+"?ending_before="+l.cursor, f.key, "")
			require.Equal(t, http.StatusBadRequest, res.status, "%s: %s", l.path, res.body)
			assert.Equal(t, "parameter_unknown", errorOf(t, res)["code"], l.path)
			assert.Equal(t, "ending_before", errorOf(t, res)["param"], l.path)
		}
	})
}
