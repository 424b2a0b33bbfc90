package forwarding

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
)

//go:embed presets.json
var presetsJSON []byte

// Preset is a ready destination for a common processor: its field map,
// format and secret headers. URL is its fixed endpoint, or "" when each
// merchant's differs (see URLExample).
type Preset struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	URLExample  string `json:"url_example,omitempty"`
	Destination
}

// presets are the parsed presets.json, in file order.
var presets = mustParsePresets(presetsJSON)

// mustParsePresets parses the embedded presets; it panics at package start
// when the file is broken (a test keeps it whole).
func mustParsePresets(b []byte) []Preset {
	var file struct {
		Presets []Preset `json:"presets"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		panic(fmt.Sprintf("forwarding: presets.json: %v", err))
	}
	return file.Presets
}

// Presets returns every preset, in the order of presets.json. The slice is
// the caller's own.
func Presets() []Preset {
	out := make([]Preset, len(presets))
	for i, p := range presets {
		out[i] = p.clone()
	}
	return out
}

// PresetByName returns the preset named name, and whether there is one.
func PresetByName(name string) (Preset, bool) {
	for _, p := range presets {
		if p.Name == name {
			return p.clone(), true
		}
	}
	return Preset{}, false
}

// DestinationFor returns the preset's destination with url as its URL
// pattern, or the preset's own URL when url is "". Validate the result.
func (p Preset) DestinationFor(url string) Destination {
	d := p.clone().Destination
	if url != "" {
		d.URL = url
	}
	return d
}

// clone copies p deeply, so callers cannot change the embedded presets.
func (p Preset) clone() Preset {
	c := p
	c.Fields = make(map[Replacement][]Field, len(p.Fields))
	for r, fs := range p.Fields {
		c.Fields[r] = slices.Clone(fs)
	}
	c.SecretHeaders = slices.Clone(p.SecretHeaders)
	if p.Signature != nil {
		s := *p.Signature
		c.Signature = &s
	}
	return c
}
