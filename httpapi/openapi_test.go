package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	cardpkg "github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// openAPIDoc returns the embedded OpenAPI document, loaded and validated.
func openAPIDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := apiDoc()
	require.NoError(t, err)
	return doc
}

func TestOpenAPIDocumentIsValidOpenAPI31(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(httpapi.OpenAPIYAML)
	require.NoError(t, err)
	assert.Equal(t, "3.1.0", doc.OpenAPI)
	assert.True(t, doc.IsOpenAPI31OrLater(), "validated with OpenAPI 3.1's rules and JSON Schema 2020-12")
	require.NoError(t, doc.Validate(context.Background(), docValidation...))

	t.Run("a broken document is refused", func(t *testing.T) {
		for name, edit := range map[string][2]string{
			"an example that breaks its schema": {`example: {key_id: 2039458811}`, `example: {key_id: "two"}`},
			"a reference to nothing":            {`#/components/schemas/RotatedKey"}`, `#/components/schemas/Nothing"}`},
			"a response without description":    {"description: The new primary key.\n", ""},
		} {
			t.Run(name, func(t *testing.T) {
				broken := strings.Replace(string(httpapi.OpenAPIYAML), edit[0], edit[1], 1)
				require.NotEqual(t, string(httpapi.OpenAPIYAML), broken, "the edit applies")
				_, err := loadDoc([]byte(broken))
				assert.Error(t, err)
			})
		}
	})
}

// openAPIPath turns an echo route path ("/tokens/:id") into an OpenAPI
// path template ("/tokens/{id}").
func openAPIPath(echoPath string) string {
	parts := strings.Split(echoPath, "/")
	for i, p := range parts {
		if name, ok := strings.CutPrefix(p, ":"); ok {
			parts[i] = "{" + name + "}"
		}
	}
	return strings.Join(parts, "/")
}

// documented returns "METHOD /path" for every operation of doc.
func documented(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// served returns "METHOD /path" for every route echo serves, HEAD routes
// apart: every GET answers HEAD too, which the document says once for all.
func served(t *testing.T, s *httpapi.Server) (routes, heads []string) {
	t.Helper()
	for _, r := range s.EchoRoutes() {
		key := r.Method + " " + openAPIPath(r.Path)
		if r.Method == http.MethodHead {
			heads = append(heads, strings.Replace(key, http.MethodHead, http.MethodGet, 1))
			continue
		}
		routes = append(routes, key)
	}
	slices.Sort(routes)
	slices.Sort(heads)
	return routes, heads
}

func TestOpenAPIDocumentsEveryServedRouteAndNoOther(t *testing.T) {
	ts := newTestServer(t)
	doc := openAPIDoc(t)
	routes, heads := served(t, ts.srv)
	want := documented(doc)
	for _, r := range routes {
		assert.Contains(t, want, r, "served but missing from httpapi/openapi.yaml")
	}
	for _, d := range want {
		assert.Contains(t, routes, d, "documented in httpapi/openapi.yaml but not served")
	}
	var gets []string
	for _, d := range want {
		if strings.HasPrefix(d, http.MethodGet+" ") {
			gets = append(gets, d)
		}
	}
	assert.Equal(t, gets, heads, "HEAD is served exactly on the GET routes")
}

func TestOpenAPISecurityAndQueryMatchTheRouteTable(t *testing.T) {
	ts := newTestServer(t)
	doc := openAPIDoc(t)
	for _, r := range ts.routes(t) {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			op := doc.Paths.Find(openAPIPath(r.Path)).GetOperation(r.Method)
			require.NotNil(t, op)
			require.NotNil(t, op.Security, "every operation states its security, empty for none")
			if r.Scope == "" {
				assert.Empty(t, *op.Security, "an unauthenticated route")
			} else {
				require.NotEmpty(t, *op.Security)
				for _, req := range *op.Security {
					for scheme, scopes := range req {
						assert.Contains(t, doc.Components.SecuritySchemes, scheme)
						assert.Equal(t, []string{string(r.Scope)}, scopes, "the route's one scope, under %s", scheme)
					}
				}
			}
			var query []string
			for _, p := range append(op.Parameters, doc.Paths.Find(openAPIPath(r.Path)).Parameters...) {
				if p.Value.In == openapi3.ParameterInQuery {
					query = append(query, p.Value.Name)
				}
			}
			slices.Sort(query)
			want := slices.Sorted(slices.Values(r.Query))
			assert.Equal(t, want, query, "the query parameters the route table allows")
		})
	}
}

func TestOpenAPIJSONIsServedWithoutAuthentication(t *testing.T) {
	ts := newTestServer(t)
	res := ts.do(t, http.MethodGet, "/openapi.json", "", "")
	require.Equal(t, http.StatusOK, res.status, "body: %.300s", res.body)
	assert.Equal(t, "application/json", res.header.Get("Content-Type"))

	loader := openapi3.NewLoader()
	served, err := loader.LoadFromData(res.body)
	require.NoError(t, err)
	want, err := json.Marshal(openAPIDoc(t))
	require.NoError(t, err)
	got, err := json.Marshal(served)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got), "the JSON is the YAML document, converted")

	assert.Equal(t, http.StatusBadRequest, ts.do(t, http.MethodGet, "/openapi.json?format=yaml", "", "").status)
}

func TestYAMLToJSONKeepsEveryValue(t *testing.T) {
	tests := []struct{ name, yaml, json string }{
		{"status keys become strings", "responses:\n  200: {description: ok}\n", `{"responses":{"200":{"description":"ok"}}}`},
		{"scalars keep their types", "a: 1\nb: true\nc: x\nd: 1.5\ne: null\n", `{"a":1,"b":true,"c":"x","d":1.5,"e":null}`},
		{"quoted stays a string", "a: \"2026-11-22T15:16:55Z\"\nb: \"true\"\n", `{"a":"2026-11-22T15:16:55Z","b":"true"}`},
		{"lists of maps", "a: [{1: x}, [y]]\n", `{"a":[{"1":"x"},["y"]]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := httpapi.YAMLToJSON([]byte(tt.yaml))
			require.NoError(t, err)
			assert.JSONEq(t, tt.json, string(got))
		})
	}
	t.Run("a mapping key JSON cannot hold", func(t *testing.T) {
		_, err := httpapi.YAMLToJSON([]byte("? [a, b]\n: c\n"))
		assert.Error(t, err)
	})
}

// digitRun finds runs of digits that may be separated by single spaces or
// dashes, as card numbers are written.
var digitRun = regexp.MustCompile(`[0-9](?:[ -]?[0-9]){11,}`)

func TestOpenAPIExamplesHoldPublicTestCardsOnly(t *testing.T) {
	public := map[string]bool{}
	for _, c := range vaulttest.Cards(t) {
		public[c.Number] = true
	}
	found := 0
	for _, run := range digitRun.FindAllString(string(httpapi.OpenAPIYAML), -1) {
		digits := strings.NewReplacer(" ", "", "-", "").Replace(run)
		if len(digits) > 19 || !cardpkg.Luhn(digits) {
			continue
		}
		found++
		assert.True(t, public[digits], "%s in httpapi/openapi.yaml is not a public test card of testdata/cards.json", cardpkg.MaskPANs(digits))
	}
	assert.NotZero(t, found, "the examples show test cards")
}
