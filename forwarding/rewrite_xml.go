package forwarding

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
)

// xmlElem is an open XML element.
type xmlElem struct {
	name         string // local name
	rawName      string // name as written, with its prefix
	contentStart int    // offset just after the start tag
	selfClosing  bool
	hasChild     bool
	text         strings.Builder
}

// xmlWalker tracks the open elements of an XML token stream; names are
// their local names, the path of the current element.
type xmlWalker struct {
	body  []byte
	stack []*xmlElem
	names []string
	sp    *splicer
	visit visitor
	roots int
}

// rewriteXML walks body with encoding/xml (strict; no DTD processing, no
// external entities, UTF-8 only) and replaces the text of leaf elements and
// attribute values the visitor edits, keeping every other byte. A leaf
// written <a/> becomes <a>text</a> when edited. Elements with child
// elements are not slots.
func rewriteXML(body []byte, visit visitor) ([]byte, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	w := &xmlWalker{body: body, sp: &splicer{src: body}, visit: visit}
	for {
		start := int(dec.InputOffset())
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errInvalidBody
		}
		if err := w.token(tok, start, int(dec.InputOffset())); err != nil {
			return nil, err
		}
	}
	if w.roots != 1 || len(w.stack) != 0 {
		return nil, errInvalidBody
	}
	return w.sp.bytes(), nil
}

// token handles one token spanning body[start:end].
func (w *xmlWalker) token(tok xml.Token, start, end int) error {
	switch t := tok.(type) {
	case xml.StartElement:
		return w.startElement(t, start, end)
	case xml.CharData:
		if n := len(w.stack); n > 0 {
			w.stack[n-1].text.Write(t)
		} else if len(bytes.TrimSpace(t)) > 0 {
			return errInvalidBody
		}
	case xml.EndElement:
		w.endElement(start)
	}
	return nil
}

// startElement opens an element and visits its attributes.
func (w *xmlWalker) startElement(t xml.StartElement, start, end int) error {
	if len(w.stack) == 0 {
		w.roots++
	} else {
		w.stack[len(w.stack)-1].hasChild = true
	}
	raw := w.body[start:end]
	el := &xmlElem{name: t.Name.Local, rawName: rawTagName(raw), contentStart: end, selfClosing: bytes.HasSuffix(raw, []byte("/>"))}
	w.stack = append(w.stack, el)
	w.names = append(w.names, el.name)
	spans := scanAttrs(raw)
	if len(spans) != len(t.Attr) {
		return errInvalidBody
	}
	for i, a := range t.Attr {
		path := append(w.names, "@"+a.Name.Local) // past len(names): reused scratch
		if e, ok := w.visit(slot{path: path, kind: kindText, value: a.Value}); ok {
			w.sp.replace(start+spans[i][0], start+spans[i][1], xmlEscape(e.text))
		}
	}
	return nil
}

// endElement closes the innermost element; a leaf's text is a slot. start
// is where the end tag begins (for <a/>, where the start tag ends).
func (w *xmlWalker) endElement(start int) {
	el := w.stack[len(w.stack)-1]
	if !el.hasChild {
		if e, ok := w.visit(slot{path: w.names, kind: kindText, value: el.text.String()}); ok {
			w.writeText(el, start, xmlEscape(e.text))
		}
	}
	w.stack = w.stack[:len(w.stack)-1]
	w.names = w.names[:len(w.names)-1]
}

// writeText replaces el's content with text.
func (w *xmlWalker) writeText(el *xmlElem, endTag int, text []byte) {
	if !el.selfClosing {
		w.sp.replace(el.contentStart, endTag, text)
		return
	}
	repl := append([]byte(">"), text...)
	repl = append(append(append(repl, "</"...), el.rawName...), '>')
	w.sp.replace(el.contentStart-2, el.contentStart, repl)
}

// rawTagName returns the element name of a raw start tag, as written.
func rawTagName(raw []byte) string {
	end := bytes.IndexAny(raw, " \t\r\n/>")
	if end < 1 {
		return ""
	}
	return string(raw[1:end])
}

// scanAttrs returns the byte spans of the attribute values (inside the
// quotes) of a raw start tag the decoder already accepted, in order.
func scanAttrs(raw []byte) [][2]int {
	var spans [][2]int
	i := len(rawTagName(raw)) + 1
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == '/' || raw[i] == '>' {
			return spans
		}
		eq := bytes.IndexByte(raw[i:], '=')
		if eq < 0 {
			return spans
		}
		i = skipSpace(raw, i+eq+1)
		if i >= len(raw) {
			return spans
		}
		q := raw[i]
		closing := bytes.IndexByte(raw[i+1:], q)
		if closing < 0 {
			return spans
		}
		spans = append(spans, [2]int{i + 1, i + 1 + closing})
		i += closing + 2
	}
}

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// xmlEscape escapes s for element text or a quoted attribute value.
func xmlEscape(s string) []byte {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // writing to a Buffer cannot fail
	return b.Bytes()
}
