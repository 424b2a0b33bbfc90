package httpapi_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/internal/apidoc"
)

func TestAPIReferenceIsGeneratedFromTheDocument(t *testing.T) {
	doc, err := apidoc.Load(httpapi.OpenAPIYAML)
	require.NoError(t, err)
	want := string(apidoc.Render(doc)) + "\n"
	got, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	require.NoError(t, err)
	if string(got) != want {
		t.Fatal("docs/api.md is stale or was edited by hand: run `make docs` (go generate ./httpapi) and commit it")
	}
	for _, r := range documented(openAPIDoc(t)) {
		method, path, _ := strings.Cut(r, " ")
		assert.Contains(t, want, "`"+method+" "+path+"`", "the reference lists every route")
	}
}
