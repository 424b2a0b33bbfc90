package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cardvault/cardvault/vault"
)

// decodeBodyFast is the three-decoder path decodeBody replaced, kept
// until its differential tests go: it decodes body, one JSON value, into dst and checks dst's
// validate tags. Before decoding it refuses what encoding/json would let
// through: invalid UTF-8 (which it would silently replace), nesting deeper
// than MaxJSONDepth, arrays longer than MaxJSONArrayLen, duplicate keys
// (where it would keep the last) and field names that match a struct field
// only case-insensitively (which it would accept). Every error is a
// KindBadRequest *vault.Error (KindInvalid is left to the domain) whose
// message and param never quote a value and mask any card number in a
// field name.
//
// A body the single-pass fastDecode takes (the usual, well-formed one) is
// decoded by it alone; any other goes through decodeBodyStrict, so every
// refusal is exactly the one decodeBodyStrict gives.
func decodeBodyFast(body []byte, dst any) error {
	if fastDecode(body, dst) {
		return validationError(validate.Struct(dst))
	}
	return decodeBodyStrict(body, dst)
}

// decodeBodyStrict is decodeBody in three passes: a UTF-8 check, the
// structural scan (scanJSON) and encoding/json. It defines every error
// decodeBody returns; fastDecode only ever agrees with it.
func decodeBodyStrict(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "invalid_utf8", Message: "the request body must be valid UTF-8"}
	}
	if err := scanJSON(body, reflect.TypeOf(dst)); err != nil {
		return err
	}
	if err := unmarshalStrict(body, dst); err != nil {
		return err
	}
	return validationError(validate.Struct(dst))
}

// unmarshalStrict decodes exactly one JSON value with no unknown fields.
func unmarshalStrict(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return malformed("the request body must hold a single JSON value")
	}
	return nil
}

// jsonError translates a decoding error into a client-safe domain error that
// names the field but never quotes the submitted value.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid_type", Param: echoName(typeErr.Field),
			Message: fmt.Sprintf("%s must be of type %s", fieldName(typeErr.Field), legacyTypeName(typeErr.Type.Kind().String()))}
	case errors.As(err, &syntaxErr):
		return malformed(fmt.Sprintf("the request body is not valid JSON (at byte %d)", syntaxErr.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed("the request body is not valid JSON (truncated)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return unknownField(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid_type", Message: fe.msg}
	}
	return malformed("the request body is not valid JSON")
}

func legacyTypeName(kind string) string {
	switch kind {
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	}
	return kind
}

// jsonScanner walks a JSON document token by token alongside the Go type it
// will be decoded into, enforcing what encoding/json does not.
type jsonScanner struct {
	dec   *json.Decoder
	depth int
}

// scanJSON checks that body is a single JSON value within MaxJSONDepth and
// MaxJSONArrayLen, without duplicate keys, whose object keys name fields of
// t exactly (case-sensitively) where t is a struct. It returns nil or a
// KindBadRequest *vault.Error.
func scanJSON(body []byte, t reflect.Type) error {
	s := &jsonScanner{dec: json.NewDecoder(bytes.NewReader(body))}
	s.dec.UseNumber() // numbers stay text: no overflow errors that quote them
	if err := s.value(t, ""); err != nil {
		return err
	}
	if _, err := s.dec.Token(); err != io.EOF {
		return malformed("the request body must hold a single JSON value")
	}
	return nil
}

// value scans one JSON value that decodes into t (nil when unknown) at the
// JSON path.
func (s *jsonScanner) value(t reflect.Type, path string) error {
	tok, err := s.dec.Token()
	if err != nil {
		return jsonError(err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if s.depth++; s.depth > MaxJSONDepth {
		return &vault.Error{Kind: vault.KindBadRequest, Code: "nesting_too_deep", Param: echoName(path),
			Message: fmt.Sprintf("the request body may nest objects and arrays at most %d deep", MaxJSONDepth)}
	}
	defer func() { s.depth-- }()
	if d == '[' {
		err = s.array(t, path)
	} else {
		err = s.object(t, path)
	}
	if err != nil {
		return err
	}
	if _, err := s.dec.Token(); err != nil { // the closing delimiter
		return jsonError(err)
	}
	return nil
}

// array scans the elements of an array up to its closing bracket.
func (s *jsonScanner) array(t reflect.Type, path string) error {
	sh := shapeOf(t)
	for n := 0; s.dec.More(); n++ {
		if n == MaxJSONArrayLen {
			return &vault.Error{Kind: vault.KindBadRequest, Code: "array_too_long", Param: echoName(path),
				Message: fmt.Sprintf("arrays in the request body may have at most %d elements", MaxJSONArrayLen)}
		}
		if err := s.value(sh.elem, path); err != nil {
			return err
		}
	}
	return nil
}

// object scans the members of an object up to its closing brace.
func (s *jsonScanner) object(t reflect.Type, path string) error {
	sh := shapeOf(t)
	seen := make(map[string]struct{})
	for s.dec.More() {
		tok, err := s.dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, _ := tok.(string)
		p := key
		if path != "" {
			p = path + "." + key
		}
		if _, dup := seen[key]; dup {
			name := echoName(p)
			return &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_duplicate", Param: name,
				Message: "field " + name + " appears more than once"}
		}
		seen[key] = struct{}{}
		elem := sh.elem
		if sh.fields != nil {
			var ok bool
			if elem, ok = sh.fields[key]; !ok {
				return unknownField(p)
			}
		}
		if err := s.value(elem, p); err != nil {
			return err
		}
	}
	return nil
}

// shape is what the scanner knows of a Go type: the JSON fields of a struct
// by exact name, or the element type of a map, slice or array. The zero
// shape (an unknown, scalar or custom-decoded type) checks structure only.
type shape struct {
	fields map[string]reflect.Type
	elem   reflect.Type
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	shapes          sync.Map // reflect.Type → shape
)

// shapeOf returns the shape of t, cached.
func shapeOf(t reflect.Type) shape {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return shape{}
	}
	if sh, ok := shapes.Load(t); ok {
		return sh.(shape)
	}
	var sh shape
	switch pt := reflect.PointerTo(t); {
	case pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler):
	case t.Kind() == reflect.Struct:
		sh.fields = make(map[string]reflect.Type)
		addFields(sh.fields, t)
	case t.Kind() == reflect.Map, t.Kind() == reflect.Slice, t.Kind() == reflect.Array:
		sh.elem = t.Elem()
	}
	shapes.Store(t, sh)
	return sh
}

// addFields adds the JSON names of struct t's fields to fields, promoting
// the fields of untagged embedded structs as encoding/json does (the outer
// name wins).
func addFields(fields map[string]reflect.Type, t reflect.Type) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, et := range embedded {
		inner := make(map[string]reflect.Type)
		addFields(inner, et)
		for name, ft := range inner {
			if _, taken := fields[name]; !taken {
				fields[name] = ft
			}
		}
	}
}

// fastDecode decodes body into dst, a pointer to a zero struct, in one pass
// over the bytes that checks everything decodeBodyStrict checks: UTF-8,
// JSON syntax, nesting, duplicate keys and exact field names. It fills only
// what its plan knows (strings, flexString, bools, integers, structs,
// pointers to structs and map[string]string) and takes only input it is
// sure encoding/json would decode to the same value without error. It
// returns false, with *dst zero again, for anything else (any bad input and
// any unusual good one), which decodeBodyStrict then decides; it never
// returns an error, so it can never word one differently.
func fastDecode(body []byte, dst any) bool {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	v := rv.Elem()
	p := planOf(v.Type())
	if p.kind != planStruct || !v.IsZero() {
		return false
	}
	d := fastDecoder{b: body}
	d.space()
	if d.i == len(d.b) || d.b[d.i] != '{' || !d.object(p, v, 1) {
		v.SetZero()
		return false
	}
	if d.space(); d.i != len(d.b) {
		v.SetZero()
		return false
	}
	return true
}

// planKind is what fastDecode does with a Go type.
type planKind uint8

const (
	planNone      planKind = iota // not handled: decodeBodyStrict decides
	planString                    // a string kind without its own unmarshaler
	planFlex                      // flexString: a string, a number's text or null
	planBool                      // bool
	planInt                       // signed integer kinds
	planUint                      // unsigned integer kinds
	planStruct                    // a struct whose fields all have plans
	planPtrStruct                 // a pointer to such a struct
	planStringMap                 // map[string]string
)

// plan is how fastDecode fills one Go type.
type plan struct {
	kind   planKind
	typ    reflect.Type
	fields map[string]planField // planStruct: by exact JSON name
	elem   *plan                // planPtrStruct: the struct's plan
}

// planField is one JSON field of a struct: its index and its bit in the
// set of fields seen in one object (for duplicate keys).
type planField struct {
	index int
	bit   uint64
	plan  *plan
}

var (
	plans          sync.Map // reflect.Type → *plan
	flexStringType = reflect.TypeFor[flexString]()
	stringMapType  = reflect.TypeFor[map[string]string]()
	noPlan         = &plan{}
)

// maxPlanDepth bounds how deep planOf follows nested types; deeper (or
// recursive) types get no plan.
const maxPlanDepth = 8

// planOf returns the cached plan of t.
func planOf(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := buildPlan(t, 0)
	plans.Store(t, p)
	return p
}

// buildPlan returns the plan of t, or noPlan when fastDecode must leave
// values of t to encoding/json.
func buildPlan(t reflect.Type, depth int) *plan {
	if depth > maxPlanDepth {
		return noPlan
	}
	if t == flexStringType {
		return &plan{kind: planFlex, typ: t}
	}
	if t == stringMapType {
		return &plan{kind: planStringMap, typ: t}
	}
	if pt := reflect.PointerTo(t); pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler) {
		return noPlan
	}
	switch t.Kind() {
	case reflect.String:
		return &plan{kind: planString, typ: t}
	case reflect.Bool:
		return &plan{kind: planBool, typ: t}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &plan{kind: planInt, typ: t}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &plan{kind: planUint, typ: t}
	case reflect.Pointer:
		if elem := buildPlan(t.Elem(), depth+1); elem.kind == planStruct {
			return &plan{kind: planPtrStruct, typ: t, elem: elem}
		}
	case reflect.Struct:
		return buildStructPlan(t, depth)
	}
	return noPlan
}

// buildStructPlan returns the plan of struct t, or noPlan if any field is
// embedded, has a name or tag option encoding/json treats specially, or has
// no plan itself.
func buildStructPlan(t reflect.Type, depth int) *plan {
	p := &plan{kind: planStruct, typ: t, fields: make(map[string]planField)}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous || t.NumField() > 64 {
			return noPlan
		}
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		if !plainName(name) || strings.Contains(opts, "string") {
			return noPlan
		}
		fp := buildPlan(f.Type, depth+1)
		if _, dup := p.fields[name]; dup || fp.kind == planNone {
			return noPlan
		}
		p.fields[name] = planField{index: i, bit: 1 << len(p.fields), plan: fp}
	}
	return p
}

// plainName reports whether a JSON field name is letters, digits and
// underscores only, which encoding/json takes as written.
func plainName(name string) bool {
	for _, r := range name {
		if r != '_' && !isASCIIDigit(byte(r)) && (r|0x20 < 'a' || r|0x20 > 'z') {
			return false
		}
	}
	return name != ""
}

// fastDecoder is fastDecode's position in the body. Its methods return
// false as soon as the input is anything they do not fully handle.
type fastDecoder struct {
	b []byte
	i int
}

// space skips JSON whitespace.
func (d *fastDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte, 0 at the end.
func (d *fastDecoder) next() byte {
	d.space()
	if d.i == len(d.b) {
		return 0
	}
	return d.b[d.i]
}

// object decodes the object at d.i, whose '{' is at nesting depth, into
// struct v of plan p.
func (d *fastDecoder) object(p *plan, v reflect.Value, depth int) bool {
	if depth > MaxJSONDepth {
		return false
	}
	d.i++ // '{'
	if d.next() == '}' {
		d.i++
		return true
	}
	var seen uint64
	for {
		if d.next() != '"' {
			return false
		}
		raw, escaped, ok := d.str()
		if !ok {
			return false
		}
		var f planField
		if escaped {
			key, ok := unescape(raw)
			if !ok {
				return false
			}
			f, ok = p.fields[key]
			if !ok {
				return false
			}
		} else if f, ok = p.fields[string(raw)]; !ok {
			return false
		}
		if seen&f.bit != 0 {
			return false
		}
		seen |= f.bit
		if d.next() != ':' {
			return false
		}
		d.i++
		if !d.value(f.plan, v.Field(f.index), depth) {
			return false
		}
		if !d.endMember('}') {
			return false
		}
		if d.b[d.i-1] == '}' {
			return true
		}
	}
}

// endMember consumes the ',' after an object member, or the closing brace.
func (d *fastDecoder) endMember(closing byte) bool {
	switch d.next() {
	case ',':
		d.i++
		return true
	case closing:
		d.i++
		return true
	}
	return false
}

// value decodes the value at d.i, inside a container at nesting depth, into
// v of plan p.
func (d *fastDecoder) value(p *plan, v reflect.Value, depth int) bool {
	c := d.next()
	if c == 'n' {
		if !d.literal("null") {
			return false
		}
		switch p.kind {
		case planFlex, planPtrStruct, planStringMap:
			v.SetZero() // what encoding/json and flexString make of null
		}
		return true
	}
	switch p.kind {
	case planString, planFlex:
		return d.stringValue(p, v, c)
	case planBool:
		return d.boolValue(v, c)
	case planInt, planUint:
		return d.intValue(p, v)
	case planStruct:
		return c == '{' && d.object(p, v, depth+1)
	case planPtrStruct:
		if c != '{' {
			return false
		}
		if v.IsNil() {
			v.Set(reflect.New(p.elem.typ))
		}
		return d.object(p.elem, v.Elem(), depth+1)
	case planStringMap:
		return c == '{' && d.stringMap(v.Addr().Interface().(*map[string]string), depth+1)
	}
	return false
}

// stringValue decodes a JSON string into a string kind, or a string or a
// number's text into a flexString.
func (d *fastDecoder) stringValue(p *plan, v reflect.Value, c byte) bool {
	if c != '"' {
		if p.kind != planFlex {
			return false
		}
		start := d.i
		if !d.number() {
			return false
		}
		v.SetString(string(d.b[start:d.i]))
		return true
	}
	s, ok := d.text()
	if ok {
		v.SetString(s)
	}
	return ok
}

// boolValue decodes true or false.
func (d *fastDecoder) boolValue(v reflect.Value, c byte) bool {
	switch {
	case c == 't' && d.literal("true"):
		v.SetBool(true)
	case c == 'f' && d.literal("false"):
		v.SetBool(false)
	default:
		return false
	}
	return true
}

// intValue decodes a JSON integer (no fraction or exponent) that fits v.
func (d *fastDecoder) intValue(p *plan, v reflect.Value) bool {
	start := d.i
	if !d.number() {
		return false
	}
	lit := d.b[start:d.i]
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	var n uint64
	for _, c := range lit {
		if !isASCIIDigit(c) || n > (1<<63)/10 {
			return false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<63-1 {
		return false
	}
	if p.kind == planUint {
		if neg || v.OverflowUint(n) { // encoding/json refuses even -0
			return false
		}
		v.SetUint(n)
		return true
	}
	i := int64(n)
	if neg {
		i = -i
	}
	if v.OverflowInt(i) {
		return false
	}
	v.SetInt(i)
	return true
}

// stringMap decodes an object of string (or null) values into *m, which
// must hold no keys yet.
func (d *fastDecoder) stringMap(m *map[string]string, depth int) bool {
	if depth > MaxJSONDepth || len(*m) != 0 {
		return false
	}
	if *m == nil {
		*m = make(map[string]string)
	}
	d.i++ // '{'
	if d.next() == '}' {
		d.i++
		return true
	}
	for {
		if d.next() != '"' {
			return false
		}
		key, ok := d.text()
		if !ok {
			return false
		}
		if _, dup := (*m)[key]; dup {
			return false
		}
		if d.next() != ':' {
			return false
		}
		d.i++
		var val string
		switch d.next() {
		case '"':
			if val, ok = d.text(); !ok {
				return false
			}
		case 'n':
			if !d.literal("null") {
				return false
			}
		default:
			return false
		}
		(*m)[key] = val
		if !d.endMember('}') {
			return false
		}
		if d.b[d.i-1] == '}' {
			return true
		}
	}
}

// literal consumes the literal word w.
func (d *fastDecoder) literal(w string) bool {
	if !bytes.HasPrefix(d.b[d.i:], []byte(w)) {
		return false
	}
	d.i += len(w)
	return true
}

// number consumes a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() bool {
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case !d.digits():
		return false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if !d.digits() {
			return false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if !d.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more ASCII digits.
func (d *fastDecoder) digits() bool {
	start := d.i
	for d.i < len(d.b) && isASCIIDigit(d.b[d.i]) {
		d.i++
	}
	return d.i > start
}

// text consumes a JSON string and returns its value.
func (d *fastDecoder) text() (string, bool) {
	raw, escaped, ok := d.str()
	if !ok {
		return "", false
	}
	if escaped {
		return unescape(raw)
	}
	return string(raw), true
}

// str consumes a JSON string whose opening quote is at d.i and returns the
// bytes between the quotes, and whether they hold an escape. It refuses
// control characters, invalid UTF-8 and malformed escapes.
func (d *fastDecoder) str() (raw []byte, escaped, ok bool) {
	d.i++ // '"'
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			raw = d.b[start:d.i]
			d.i++
			return raw, escaped, true
		case c == '\\':
			escaped = true
			if d.i+1 == len(d.b) {
				return nil, false, false
			}
			switch d.b[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if _, ok := hex4(d.b[d.i+2:]); !ok {
					return nil, false, false
				}
				d.i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, n := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false, false
			}
			d.i += n
		}
	}
	return nil, false, false
}

// hex4 returns the value of the four hex digits b starts with.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case isASCIIDigit(c):
			r = r<<4 | rune(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// unescape returns the value of a string's bytes already checked by str. It
// refuses surrogate escapes (paired or not), leaving them to encoding/json.
func unescape(raw []byte) (string, bool) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw[i+1:])
			if r >= 0xD800 && r < 0xE000 {
				return "", false
			}
			out = utf8.AppendRune(out, r)
			i += 4
		default: // '"', '\\', '/'
			out = append(out, raw[i])
		}
	}
	return string(out), true
}
