// Command gen writes the Markdown API reference of an OpenAPI document:
//
//	go run ./internal/apidoc/gen -in httpapi/openapi.yaml -out docs/api.md
//
// httpapi's go:generate line and `make docs` run it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cardvault/cardvault/internal/apidoc"
)

func main() {
	in := flag.String("in", "httpapi/openapi.yaml", "the OpenAPI document")
	out := flag.String("out", "docs/api.md", "the Markdown file to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "apidoc:", err)
		os.Exit(1)
	}
}

// run renders the document at in into out; it returns the first error.
func run(in, out string) error {
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	doc, err := apidoc.Load(data)
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(apidoc.Render(doc), '\n'), 0o644)
}
