package forwarding

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// errInvalidBody is the rewriters' error for a body that does not parse in
// its format. It says nothing about the body.
var errInvalidBody = errors.New("body does not parse")

// slotKind is the type of value a slot holds.
type slotKind int

// The kinds of slot: JSON scalars, and the untyped text of form values and
// XML text and attributes.
const (
	kindString slotKind = iota
	kindNumber
	kindNull
	kindBool
	kindText
)

// slot is one scalar place in a body. A visitor must not keep path: the
// walker reuses it.
type slot struct {
	path  []string // where it is (see parsePath for the segments)
	kind  slotKind
	value string // decoded: the string's text, the number's literal, the text
}

// edit is what a visitor writes into a slot: num, a JSON number literal,
// into a JSON number slot when num is set; else text, as a JSON string or
// as the format's text.
type edit struct {
	text string
	num  string
}

// visitor decides, for each slot, whether to write into it.
type visitor func(slot) (edit, bool)

// rewrite walks body in format f and returns it with the visitor's edits
// spliced in; every byte outside an edited value is kept as it was. It
// returns errInvalidBody when the body does not parse.
func rewrite(f Format, body []byte, visit visitor) ([]byte, error) {
	switch f {
	case FormatJSON:
		return rewriteJSON(body, visit)
	case FormatForm:
		return rewriteForm(body, visit)
	case FormatXML:
		return rewriteXML(body, visit)
	}
	return nil, errInvalidBody
}

// splicer collects byte-range replacements of src, in increasing order.
type splicer struct {
	src   []byte
	out   []byte
	next  int // first byte of src not yet copied
	dirty bool
}

// replace replaces src[start:end] with repl. Ranges must come in order and
// not overlap; a range out of order is ignored rather than corrupt output.
func (s *splicer) replace(start, end int, repl []byte) {
	if start < s.next || end < start || end > len(s.src) {
		return
	}
	s.out = append(s.out, s.src[s.next:start]...)
	s.out = append(s.out, repl...)
	s.next, s.dirty = end, true
}

// bytes returns the result: src itself (copied) when nothing changed.
func (s *splicer) bytes() []byte {
	if !s.dirty {
		return bytes.Clone(s.src)
	}
	return append(s.out, s.src[s.next:]...)
}

// jsonFrame is an open JSON object or array.
type jsonFrame struct {
	object  bool
	index   int  // the current index of an array
	wantKey bool // an object expects a key next
}

// jsonWalker tracks where a JSON token stream is. segs is the path of the
// current value, kept up to date as tokens arrive (one segment per open
// container) so that visiting a value costs nothing more.
type jsonWalker struct {
	frames []jsonFrame
	segs   []string
	values int // top-level values seen
}

// push opens a container.
func (w *jsonWalker) push(object bool) {
	w.frames = append(w.frames, jsonFrame{object: object, wantKey: object})
	seg := "0"
	if object {
		seg = ""
	}
	w.segs = append(w.segs, seg)
}

// pop closes the innermost container, which is a value of its parent.
func (w *jsonWalker) pop() {
	w.frames = w.frames[:len(w.frames)-1]
	w.segs = w.segs[:len(w.segs)-1]
	w.valueDone()
}

// valueDone records that a value ended at the current level.
func (w *jsonWalker) valueDone() {
	n := len(w.frames)
	if n == 0 {
		w.values++
		return
	}
	f := &w.frames[n-1]
	if f.object {
		f.wantKey = true
		return
	}
	f.index++
	w.segs[n-1] = strconv.Itoa(f.index)
}

// wantsKey reports whether the next string is an object key.
func (w *jsonWalker) wantsKey() bool {
	return len(w.frames) > 0 && w.frames[len(w.frames)-1].wantKey
}

// setKey records an object key.
func (w *jsonWalker) setKey(k string) {
	n := len(w.frames)
	w.frames[n-1].wantKey = false
	w.segs[n-1] = k
}

// rewriteJSON walks body with jsontext's tokenizer (strict JSON, but
// duplicate names and invalid UTF-8 taken as encoding/json takes them:
// the last name counts, invalid bytes read as U+FFFD). Its offsets locate
// each scalar, and only the located scalars are replaced: the rest of the
// body — key order, spacing, escapes, number spellings — stays byte for
// byte (a decode-modify-encode round trip would reorder and reformat it).
func rewriteJSON(body []byte, visit visitor) ([]byte, error) {
	dec := jsonDecoders.Get().(*jsontext.Decoder)
	defer jsonDecoders.Put(dec)
	dec.Reset(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	defer dec.Reset(emptyReader) // keep no body in the pool
	w, sp := &jsonWalker{}, &splicer{src: body}
	prev := 0
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			break
		}
		if err != nil || w.values > 0 {
			return nil, errInvalidBody
		}
		end := int(dec.InputOffset())
		w.token(tok, body, prev, end, sp, visit)
		prev = end
	}
	if w.values != 1 {
		return nil, errInvalidBody
	}
	return sp.bytes(), nil
}

// jsonDecoders keeps rewriteJSON's decoders and their buffers for reuse.
var jsonDecoders = sync.Pool{New: func() any { return jsontext.NewDecoder(emptyReader) }}

// emptyReader is what a pooled decoder reads while it waits: nothing, and
// no state to share between goroutines.
var emptyReader io.Reader = noBody{}

// noBody reads as an empty body.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }

// token handles one token that ends at end.
func (w *jsonWalker) token(tok jsontext.Token, body []byte, prev, end int, sp *splicer, visit visitor) {
	var s slot
	switch k := tok.Kind(); k {
	case '{', '[':
		w.push(k == '{')
		return
	case '}', ']':
		w.pop()
		return
	case '"':
		if w.wantsKey() {
			w.setKey(tok.String())
			return
		}
		s = slot{kind: kindString, value: tok.String()}
	case '0':
		s = slot{kind: kindNumber, value: tok.String()}
	case 't', 'f':
		s = slot{kind: kindBool, value: strconv.FormatBool(k == 't')}
	case 'n':
		s = slot{kind: kindNull}
	}
	s.path = w.segs
	if e, ok := visit(s); ok {
		sp.replace(valueStart(body, prev), end, jsonValue(e, s.kind))
	}
	w.valueDone()
}

// valueStart skips the whitespace and separators between the previous
// token's end and the next value.
func valueStart(body []byte, from int) int {
	for from < len(body) && strings.IndexByte(" \t\r\n:,", body[from]) >= 0 {
		from++
	}
	return from
}

// jsonValue encodes e for a slot of kind k: e.num into a number slot when
// e has one, else e.text as a JSON string (a null becomes a string).
func jsonValue(e edit, k slotKind) []byte {
	if k == kindNumber && e.num != "" {
		return []byte(e.num)
	}
	return jsonQuote(e.text)
}

// numberEdit returns an edit of digits that is written as a JSON number
// into a number slot when it is a valid JSON integer (no leading zero), and
// as a string otherwise, so no digit is lost.
func numberEdit(digits string) edit {
	if jsonInteger(digits) {
		return edit{text: digits, num: digits}
	}
	return edit{text: digits}
}

// jsonInteger reports whether s is a non-negative JSON integer (digits, no
// leading zero).
func jsonInteger(s string) bool {
	return allDigits(s) && (s == "0" || s[0] != '0')
}

// jsonQuote returns s as a JSON string, leaving <, > and & as they are.
func jsonQuote(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// rewriteForm walks an application/x-www-form-urlencoded body pair by pair
// and rewrites only the values it edits; keys, order and the encoding of
// the other pairs stay as they were. A key without '=' counts as a key
// with an empty value.
func rewriteForm(body []byte, visit visitor) ([]byte, error) {
	parts := strings.Split(string(body), "&")
	changed := false
	for i, part := range parts {
		if part == "" {
			continue
		}
		rawKey, rawVal, _ := strings.Cut(part, "=")
		key, err1 := url.QueryUnescape(rawKey)
		val, err2 := url.QueryUnescape(rawVal)
		if err1 != nil || err2 != nil {
			return nil, errInvalidBody
		}
		if e, ok := visit(slot{path: []string{key}, kind: kindText, value: val}); ok {
			parts[i] = rawKey + "=" + formEscape(e.text)
			changed = true
		}
	}
	if !changed {
		return bytes.Clone(body), nil
	}
	return []byte(strings.Join(parts, "&")), nil
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// formEscape encodes s as a form value. Like the WHATWG serializer, and
// unlike url.QueryEscape, it leaves '*' as it is, so a masked number stays
// readable in a stored record.
func formEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "%2A", "*")
}
