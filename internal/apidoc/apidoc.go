// Package apidoc renders an OpenAPI document as a Markdown API reference:
// docs/api.md is generated from httpapi/openapi.yaml with it, so that the
// reference is never a second, hand-kept copy of the contract.
package apidoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Header is the first line of every rendered reference.
const Header = "<!-- Generated from httpapi/openapi.yaml by `make docs` (go generate ./httpapi). Do not edit: edit the YAML. -->"

// methodOrder is the order in which a path's operations are listed.
var methodOrder = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// Load parses and validates an OpenAPI document. It returns the loader's or
// the validator's error.
func Load(data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("apidoc: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("apidoc: %w", err)
	}
	return doc, nil
}

// Render returns doc as Markdown: the introduction, a table of contents,
// every operation grouped by tag, the shared responses and the schemas. The
// output depends on the document only, so it can be compared with the
// committed file.
func Render(doc *openapi3.T) []byte {
	w := &writer{doc: doc}
	w.intro()
	w.contents()
	for _, tag := range doc.Tags {
		w.tag(tag)
	}
	w.sharedResponses()
	w.schemas()
	return bytes.TrimRight(w.b.Bytes(), "\n")
}

// writer accumulates the Markdown of one document.
type writer struct {
	doc *openapi3.T
	b   bytes.Buffer
}

func (w *writer) p(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteString("\n")
}

func (w *writer) intro() {
	w.p("%s\n", Header)
	w.p("# %s (version %s)\n", w.doc.Info.Title, w.doc.Info.Version)
	w.p("%s\n", w.doc.Info.Summary)
	w.p("The machine-readable contract is served at `GET /openapi.json` (OpenAPI %s); the "+
		"test suite validates every answer it receives against it.\n", w.doc.OpenAPI)
	w.p("%s", strings.TrimSpace(w.doc.Info.Description)+"\n")
	w.p("## Authentication\n")
	for _, name := range sortedKeys(w.doc.Components.SecuritySchemes) {
		s := w.doc.Components.SecuritySchemes[name].Value
		w.p("- **%s**: %s", name, oneLine(s.Description))
	}
	w.p("")
}

// operation is one method of one path.
type operation struct {
	method, path string
	item         *openapi3.PathItem
	op           *openapi3.Operation
}

// operations returns the operations tagged tag ("" for all), by path and
// then method.
func (w *writer) operations(tag string) []operation {
	var out []operation
	for _, path := range sortedKeys(w.doc.Paths.Map()) {
		item := w.doc.Paths.Value(path)
		for _, m := range methodOrder {
			if op := item.GetOperation(m); op != nil && (tag == "" || slices.Contains(op.Tags, tag)) {
				out = append(out, operation{method: m, path: path, item: item, op: op})
			}
		}
	}
	return out
}

func (w *writer) contents() {
	w.p("## Routes\n")
	w.p("| Method and path | Scope | Summary |")
	w.p("|---|---|---|")
	for _, tag := range w.doc.Tags {
		for _, o := range w.operations(tag.Name) {
			w.p("| [`%s %s`](#%s) | %s | %s |", o.method, o.path, anchor(o.op.OperationID), scopes(o.op), o.op.Summary)
		}
	}
	w.p("")
}

func (w *writer) tag(tag *openapi3.Tag) {
	w.p("## %s\n", tag.Name)
	w.p("%s\n", tag.Description)
	for _, o := range w.operations(tag.Name) {
		w.operation(o)
	}
}

func (w *writer) operation(o operation) {
	w.p(`<a id="%s"></a>`, anchor(o.op.OperationID))
	w.p("### `%s %s`: %s\n", o.method, o.path, o.op.Summary)
	w.p("Scope: %s\n", scopes(o.op))
	w.p("%s\n", strings.TrimSpace(o.op.Description))
	w.parameters(append(slices.Clone(o.item.Parameters), o.op.Parameters...))
	w.requestBody(o.op.RequestBody)
	w.responses(o.op.Responses)
}

// scopes names the operation's security requirements: "`scope`" with the
// schemes that take it, in the document's order ("`a` (Key)", "`a` (Key
// or Bearer)"), or "none".
func scopes(op *openapi3.Operation) string {
	if op.Security == nil || len(*op.Security) == 0 {
		return "none"
	}
	var order []string               // scope lists, as first met
	schemes := map[string][]string{} // scope list → its schemes
	for _, req := range *op.Security {
		for _, scheme := range sortedKeys(req) {
			s := "`" + strings.Join(req[scheme], "`, `") + "`"
			if _, ok := schemes[s]; !ok {
				order = append(order, s)
			}
			schemes[s] = append(schemes[s], scheme)
		}
	}
	out := make([]string, 0, len(order))
	for _, s := range order {
		out = append(out, s+" ("+orList(schemes[s])+")")
	}
	return strings.Join(out, " or ")
}

// orList joins names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func (w *writer) parameters(params openapi3.Parameters) {
	if len(params) == 0 {
		return
	}
	w.p("| Parameter | In | Type | Description |")
	w.p("|---|---|---|---|")
	for _, ref := range params {
		p := ref.Value
		name := "`" + p.Name + "`"
		if p.Required {
			name += " (required)"
		}
		w.p("| %s | %s | %s | %s |", name, p.In, schemaType(p.Schema), oneLine(p.Description))
	}
	w.p("")
}

func (w *writer) requestBody(ref *openapi3.RequestBodyRef) {
	if ref == nil {
		return
	}
	body := ref.Value
	need := "optional"
	if body.Required {
		need = "required"
	}
	for _, mt := range sortedKeys(body.Content) {
		media := body.Content[mt]
		w.p("Request body (`%s`, %s): %s\n", mt, need, schemaType(media.Schema))
		w.example(media.Example)
	}
}

func (w *writer) responses(rs *openapi3.Responses) {
	w.p("| Status | Description | Body |")
	w.p("|---|---|---|")
	statuses := sortedKeys(rs.Map())
	for _, status := range statuses {
		ref := rs.Value(status)
		desc := oneLine(*ref.Value.Description)
		if ref.Ref != "" {
			name := refName(ref.Ref)
			desc = fmt.Sprintf("[%s](#response-%s)", name, strings.ToLower(name))
		}
		w.p("| %s | %s | %s |", status, desc, bodyOf(ref.Value))
	}
	w.p("")
	for _, status := range statuses {
		if ref := rs.Value(status); ref.Ref == "" {
			if media := ref.Value.Content.Get("application/json"); media != nil && media.Example != nil {
				w.p("Example `%s`:\n", status)
				w.example(media.Example)
			}
		}
	}
}

// bodyOf names what a response carries: its schema, or "none".
func bodyOf(r *openapi3.Response) string {
	var out []string
	for _, mt := range sortedKeys(r.Content) {
		out = append(out, schemaType(r.Content[mt].Schema))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func (w *writer) example(v any) {
	if v == nil {
		return
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return
	}
	w.p("```json\n%s\n```\n", b)
}

func (w *writer) sharedResponses() {
	w.p("## Shared responses\n")
	for _, name := range sortedKeys(w.doc.Components.Responses) {
		r := w.doc.Components.Responses[name].Value
		w.p(`<a id="response-%s"></a>`, strings.ToLower(name))
		w.p("### %s\n", name)
		w.p("%s\n", strings.TrimSpace(*r.Description))
		w.p("Body: %s. Headers: %s.\n", bodyOf(r), headers(r))
		if media := r.Content.Get("application/json"); media != nil {
			w.example(media.Example)
		}
	}
}

// headers lists a response's headers, required ones marked.
func headers(r *openapi3.Response) string {
	var out []string
	for _, name := range sortedKeys(r.Headers) {
		h := "`" + name + "`"
		if r.Headers[name].Value.Required {
			h += " (always)"
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func (w *writer) schemas() {
	w.p("## Schemas\n")
	for _, name := range sortedKeys(w.doc.Components.Schemas) {
		s := w.doc.Components.Schemas[name].Value
		w.p(`<a id="schema-%s"></a>`, strings.ToLower(name))
		w.p("### %s\n", name)
		if s.Description != "" {
			w.p("%s\n", strings.TrimSpace(s.Description))
		}
		if len(s.Properties) == 0 {
			w.p("Type: %s\n", constraints(s))
			continue
		}
		w.p("| Field | Type | Required | Description |")
		w.p("|---|---|---|---|")
		w.fields("", s)
		w.p("")
	}
}

// fields writes a row per property of s, with the properties of inline
// objects nested under their parent's name (card.number).
func (w *writer) fields(prefix string, s *openapi3.Schema) {
	for _, name := range sortedKeys(s.Properties) {
		ref := s.Properties[name]
		req := ""
		if slices.Contains(s.Required, name) {
			req = "yes"
		}
		w.p("| `%s%s` | %s | %s | %s |", prefix, name, schemaType(ref), req, oneLine(ref.Value.Description))
		if ref.Ref == "" && len(ref.Value.Properties) > 0 {
			w.fields(prefix+name+".", ref.Value)
		}
	}
}

// schemaType describes a schema in a few words: a link for a named one,
// else its type with its constraints.
func schemaType(ref *openapi3.SchemaRef) string {
	if ref == nil {
		return ""
	}
	if ref.Ref != "" {
		name := refName(ref.Ref)
		return fmt.Sprintf("[%s](#schema-%s)", name, strings.ToLower(name))
	}
	return constraints(ref.Value)
}

// constraints describes an unnamed schema: type, items, const, enum, format,
// bounds and pattern.
func constraints(s *openapi3.Schema) string {
	var parts []string
	if s.Const != nil {
		return "`" + jsonText(s.Const) + "`"
	}
	if s.Type != nil && len(*s.Type) > 0 {
		parts = append(parts, strings.Join(s.Type.Slice(), " \\| "))
	}
	if s.Items != nil {
		parts = append(parts, "of "+schemaType(s.Items))
	}
	if s.AdditionalProperties.Schema != nil {
		parts = append(parts, "of "+schemaType(s.AdditionalProperties.Schema))
	}
	if len(s.Enum) > 0 {
		var vals []string
		for _, v := range s.Enum {
			vals = append(vals, "`"+jsonText(v)+"`")
		}
		parts = append(parts, "one of "+strings.Join(vals, ", "))
	}
	if s.Format != "" {
		parts = append(parts, "("+s.Format+")")
	}
	parts = append(parts, bounds(s)...)
	if s.Pattern != "" {
		parts = append(parts, "matching `"+strings.ReplaceAll(s.Pattern, "|", "\\|")+"`")
	}
	return strings.Join(parts, " ")
}

// bounds describes the numeric and length limits of s.
func bounds(s *openapi3.Schema) []string {
	var out []string
	if s.Min != nil || s.Max != nil {
		out = append(out, numRange(s.Min, s.Max))
	}
	if s.MinLength > 0 || s.MaxLength != nil {
		var min, max *float64
		if s.MinLength > 0 {
			m := float64(s.MinLength)
			min = &m
		}
		if s.MaxLength != nil {
			m := float64(*s.MaxLength)
			max = &m
		}
		out = append(out, "length "+numRange(min, max))
	}
	return out
}

// numRange writes min–max, ≥ min or ≤ max.
func numRange(min, max *float64) string {
	f := func(v *float64) string { return strconv.FormatFloat(*v, 'f', -1, 64) }
	switch {
	case min != nil && max != nil:
		return f(min) + "–" + f(max)
	case min != nil:
		return "≥ " + f(min)
	}
	return "≤ " + f(max)
}

// jsonText is v as JSON, or its Go form when it has none.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.Trim(string(b), `"`)
}

// refName is the last segment of a local reference.
func refName(ref string) string {
	return ref[strings.LastIndex(ref, "/")+1:]
}

// anchor turns an operationId into a Markdown anchor.
func anchor(operationID string) string {
	return "op-" + strings.ToLower(operationID)
}

// oneLine fits text into a table cell: one line, pipes escaped.
func oneLine(text string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(text), " "), "|", "\\|")
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
