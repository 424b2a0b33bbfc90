package forwarding

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// rewriteJSONStd is the walker rewriteJSON replaced, on encoding/json's
// tokenizer: the differential fuzzer holds the two equal.
func rewriteJSONStd(body []byte, visit visitor) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	w, sp := &jsonWalker{}, &splicer{src: body}
	prev := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil || w.values > 0 {
			return nil, errInvalidBody
		}
		end := int(dec.InputOffset())
		w.tokenStd(tok, body, prev, end, sp, visit)
		prev = end
	}
	if w.values != 1 {
		return nil, errInvalidBody
	}
	return sp.bytes(), nil
}

// tokenStd is token for an encoding/json token.
func (w *jsonWalker) tokenStd(tok json.Token, body []byte, prev, end int, sp *splicer, visit visitor) {
	var s slot
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' || v == '[' {
			w.push(v == '{')
		} else {
			w.pop()
		}
		return
	case string:
		if w.wantsKey() {
			w.setKey(v)
			return
		}
		s = slot{kind: kindString, value: v}
	case json.Number:
		s = slot{kind: kindNumber, value: string(v)}
	case bool:
		s = slot{kind: kindBool, value: strconv.FormatBool(v)}
	case nil:
		s = slot{kind: kindNull}
	}
	s.path = w.segs
	if e, ok := visit(s); ok {
		sp.replace(valueStart(body, prev), end, jsonValue(e, s.kind))
	}
	w.valueDone()
}

// FuzzRewriteJSONMatchesStd holds rewriteJSON (jsontext) equal to
// rewriteJSONStd (encoding/json): for any body, both accept or both refuse
// it, visit the same slots (path, kind, decoded value) in the same order,
// and write the same bytes, for a visitor that edits nothing, one that
// edits every scalar, and the response redactor.
func FuzzRewriteJSONMatchesStd(f *testing.F) {
	for _, tc := range presetCases(&testing.T{}) {
		f.Add([]byte(tc.body))
	}
	for _, s := range []string{`{"card":{"number":4242424242424242,"cvc":123},"x":"4242 4242 4242 4242"}`,
		`{"a":1,"a":"2"}`, "{\"k\":\"\xff\xfe\"}", `{"s":"\ud800 \udc00 \u00e9"}`, `[1,2.5e3,-0,true,false,null,"x"]`,
		`{"a":{}} {"b":1}`, `{"a":[{"b":[1,{"c":"123"}]}]}`, " \t\n{\"k\" : \"v\" }\n", `"solo"`, `{"\u0041":"\"\\/\b\f\n\r\t"}`,
		`{"a":1,}`, `[`, `{"a"}`, ``, `01`, `{"a":"<&>"}`} {
		f.Add([]byte(s))
	}
	cd := visa(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, mk := range []func() (visitor, *[]string){recordingVisitor(false), recordingVisitor(true), func() (visitor, *[]string) {
			v := responseVisitor(cd)
			return v, &[]string{}
		}} {
			v1, seen1 := mk()
			v2, seen2 := mk()
			got, err := rewriteJSON(body, v1)
			want, wantErr := rewriteJSONStd(body, v2)
			require.Equal(t, wantErr == nil, err == nil, "accepts the same bodies: %q (%v, %v)", body, err, wantErr)
			if err != nil {
				continue
			}
			require.Equal(t, *seen2, *seen1, "visits the same slots: %q", body)
			require.Equal(t, string(want), string(got), "writes the same bytes: %q", body)
		}
	})
}

// recordingVisitor returns a maker of visitors that record every slot
// they see and, when edit is set, rewrite every scalar.
func recordingVisitor(editAll bool) func() (visitor, *[]string) {
	return func() (visitor, *[]string) {
		var seen []string
		return func(s slot) (edit, bool) {
			seen = append(seen, fmt.Sprintf("%q %d %q", s.path, s.kind, s.value))
			if !editAll {
				return edit{}, false
			}
			if s.kind == kindNumber {
				return numberEdit("7"), true
			}
			return edit{text: "x" + s.value}, true
		}, &seen
	}
}

// BenchmarkRewriteJSON times the walker on Stripe's own-vault body, the
// card fields filled, against the encoding/json one it replaced.
func BenchmarkRewriteJSON(b *testing.B) {
	body := []byte(`{"metadata":{"business_key":"pm_1"},"card":{"number":"","exp_month":"","exp_year":"","cvc":"","name":""}}`)
	fill := func(s slot) (edit, bool) { return edit{text: "4242424242424242"}, s.kind == kindString }
	for _, w := range []struct {
		name string
		f    func([]byte, visitor) ([]byte, error)
	}{{"jsontext", rewriteJSON}, {"encoding-json", rewriteJSONStd}} {
		b.Run(w.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.f(body, fill); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
