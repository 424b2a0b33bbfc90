package httpapi

import (
	_ "embed" // the OpenAPI document
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"

	"github.com/cardvault/cardvault/vault"
)

//go:generate go run ../internal/apidoc/gen -in openapi.yaml -out ../docs/api.md

// openAPIYAML is the OpenAPI document of every route: the contract the
// tests hold the server to, and the source of docs/api.md.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON is the document as JSON, converted once.
var openAPIJSON = sync.OnceValues(func() ([]byte, error) { return yamlToJSON(openAPIYAML) })

// openAPI serves GET /openapi.json: the OpenAPI document, without
// authentication.
func (s *Server) openAPI(c echo.Context) error {
	b, err := openAPIJSON()
	if err != nil {
		return vault.Internal(err)
	}
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(b)))
	return c.JSONBlob(http.StatusOK, b)
}

// yamlToJSON returns the YAML document y as JSON, or an error when y does
// not parse or holds a value JSON cannot (a non-scalar mapping key).
func yamlToJSON(y []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	j, err := jsonValue(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// jsonValue returns v, a decoded YAML value, with every mapping's keys
// turned into strings, as JSON objects need.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		return jsonObject(v)
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			switch k.(type) {
			case string, int, bool, float64:
				m[fmt.Sprint(k)] = e
			default:
				return nil, fmt.Errorf("openapi: mapping key %v is not a scalar", k)
			}
		}
		return jsonObject(m)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			var err error
			if out[i], err = jsonValue(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// jsonObject returns m with jsonValue applied to each of its values.
func jsonObject(m map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, e := range m {
		var err error
		if out[k], err = jsonValue(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}
