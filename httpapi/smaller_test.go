package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestABusinessKeyFilterThatIsNotTextAnswers400(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	for _, q := range []string{"%ff", "pm_%00x", "%c3%28", "pm%ed%a0%80"} {
		res := ts.do(t, http.MethodGet, "/tokens?business_key="+q, key, "")
		require.Equal(t, http.StatusBadRequest, res.status, "%s: %s", q, res.body)
		_, code := errorCode(t, res)
		assert.Equal(t, "parameter_invalid", code, q)
		assert.Equal(t, "business_key", errorOf(t, res)["param"], q)
	}
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/tokens?business_key=pm_%C3%A9t%C3%A9", key, "").status, "any valid UTF-8 is a filter")
}

func TestNonCanonicalIDsAnswerLikeUnknownOnes(t *testing.T) {
	ts := newTestServer(t)
	f := newTenantFixture(t, ts)
	spellings := func(id string) map[string]string {
		return map[string]string{
			"urn":           "urn:uuid:" + id,
			"braces":        "{" + id + "}",
			"upper case":    strings.ToUpper(id),
			"no hyphens":    strings.ReplaceAll(id, "-", ""),
			"microsoft urn": "urn:uuid:" + strings.ToUpper(id),
		}
	}
	for _, r := range []struct{ path, id string }{
		{"/tokens/", f.token}, {"/tokens/imports/", f.importJob}, {"/keys/jobs/", f.keyJob},
	} {
		require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, r.path+r.id, f.key, "").status, "the canonical id is found")
		for name, spelled := range spellings(r.id) {
			res := ts.do(t, http.MethodGet, r.path+spelled, f.key, "")
			assert.Equal(t, http.StatusNotFound, res.status, "%s %s: %s", r.path, name, res.body)
		}
	}
	res := ts.do(t, http.MethodGet, "/tokens?starting_after=urn:uuid:"+f.token, f.key, "")
	assert.Equal(t, http.StatusBadRequest, res.status, "a cursor too: %s", res.body)
}

func TestKeyStatusDoesNotShowTheRootKEKToTenants(t *testing.T) {
	ts := newTestServer(t)
	res := ts.do(t, http.MethodGet, "/keys", ts.key(t), "")
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	assert.NotContains(t, res.json(t), "root_kek_uri")
	assert.NotContains(t, string(res.body), "local://")
}
