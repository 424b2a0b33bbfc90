package apidoc_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/internal/apidoc"
)

const tiny = `
openapi: 3.1.0
info: {title: tiny, version: "2", summary: A tiny API.}
tags: [{name: Things, description: All the things.}]
components:
  securitySchemes:
    Key: {type: apiKey, in: header, name: X-Key, description: The key.}
    Bearer: {type: http, scheme: bearer, description: The key as a Bearer token.}
    Basic: {type: http, scheme: basic, description: The key as the user name.}
  schemas:
    Thing:
      type: object
      required: [id]
      properties:
        id: {type: string, format: uuid, description: "The id | the handle."}
        size: {type: [integer, "null"], minimum: 1, maximum: 9}
        tags: {type: array, items: {type: string, maxLength: 8}}
        kind: {type: string, enum: [a, b]}
        inner:
          type: object
          properties:
            deep: {const: yes}
paths:
  /things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: getThing
      tags: [Things]
      summary: Read a thing
      description: Reads it.
      security: [{Key: ["things:read"]}]
      responses:
        "200":
          description: The thing.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Thing"}
              example: {id: 0a6e2b8c-1f3d-4c5e-9a7b-8c9d0e1f2a3b}
        "404": {description: No such thing.}
  /things:
    post:
      operationId: createThing
      tags: [Things]
      summary: Make a thing
      description: Makes one.
      security: [{Key: ["things:write"]}, {Bearer: ["things:write"]}, {Basic: ["things:write"]}, {Key: ["admin"]}]
      responses:
        "201": {description: The thing.}
`

func TestRenderShowsOperationsSchemasAndScopes(t *testing.T) {
	doc, err := apidoc.Load([]byte(tiny))
	require.NoError(t, err)
	md := string(apidoc.Render(doc))
	for _, want := range []string{
		apidoc.Header,
		"# tiny (version 2)",
		"| [`GET /things/{id}`](#op-getthing) | `things:read` (Key) | Read a thing |",
		"| [`POST /things`](#op-creatething) | `things:write` (Key, Bearer or Basic) or `admin` (Key) | Make a thing |",
		"### `GET /things/{id}`: Read a thing",
		"| `id` (required) | path | string |  |",
		"| 200 | The thing. | [Thing](#schema-thing) |",
		"| 404 | No such thing. | none |",
		`"id": "0a6e2b8c-1f3d-4c5e-9a7b-8c9d0e1f2a3b"`,
		"| `id` | string (uuid) | yes | The id \\| the handle. |",
		"| `size` | integer \\| null 1–9 |  |  |",
		"| `tags` | array of string length ≤ 8 |  |  |",
		"| `kind` | string one of `a`, `b` |  |  |",
		"| `inner.deep` | `yes` |  |  |",
	} {
		assert.Contains(t, md, want)
	}
	assert.Equal(t, md, string(apidoc.Render(doc)), "the output depends on the document only")
	assert.False(t, strings.HasSuffix(md, "\n"))
}

func TestLoadRefusesAnInvalidDocument(t *testing.T) {
	_, err := apidoc.Load([]byte(strings.Replace(tiny, "description: The thing.", "", 1)))
	assert.Error(t, err)
}
