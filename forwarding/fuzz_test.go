package forwarding

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/stretchr/testify/require"
)

// fuzzURLs give the presets without a fixed URL one.
var fuzzURLs = map[string]string{
	"stripe_own_vault": "https://vault.example.com/cde-import",
	"adyen_payments":   "https://test-checkout-live.adyenpayments.com/v70/payments",
}

// FuzzBuildRedact builds arbitrary bodies for every preset and redacts
// both the result and the raw input. Nothing may panic; no error and no
// redacted output may hold the PAN; a body that parsed stays parseable; a
// forward asking for nothing changes nothing.
func FuzzBuildRedact(f *testing.F) {
	for _, tc := range presetCases(&testing.T{}) {
		f.Add([]byte(tc.body), uint8(0), uint8(0x0f))
	}
	f.Add([]byte(`{"card":{"number":4242424242424242,"cvc":123},"x":"4242 4242 4242 4242"}`), uint8(0), uint8(0x1f))
	f.Add([]byte(`<a b="378282246310005"><cvc>1234</cvc></a>`), uint8(5), uint8(0x2f))
	f.Add([]byte("card[number]=4242424242424242&card[cvc]=123"), uint8(1), uint8(0x03))
	f.Add([]byte(`{"card":{"number":"","cvc":"","name":null}}`), uint8(0), uint8(0))

	presets := Presets()
	cards := []card.Card{visa(f), testCard(f, amexPAN, "11", "2031", "1234", "Ann")}
	f.Fuzz(func(t *testing.T, body []byte, preset, mask uint8) {
		p := presets[int(preset)%len(presets)]
		dest := p.DestinationFor(fuzzURLs[p.Name])
		c := cards[int(mask>>5)%len(cards)]
		var repl []string
		for i, r := range allCard {
			if mask&(1<<i) != 0 {
				repl = append(repl, r)
			}
		}
		checkBuild(t, dest, body, repl, c)
		red, _ := RedactResponse(body, nil, c)
		requireNoPAN(t, red, c)
		if json.Valid(body) {
			require.True(t, json.Valid(red), "a JSON answer stays JSON")
			requireNoCVCValue(t, red, c)
		}
	})
}

// checkBuild builds body and checks the invariants of the result.
func checkBuild(t *testing.T, dest Destination, body []byte, repl []string, c card.Card) {
	built, err := Build(dest, body, repl, c)
	if err != nil {
		require.NotContains(t, err.Error(), c.PAN.Reveal())
		return
	}
	if len(repl) == 0 {
		require.Equal(t, body, built.Body, "asking for nothing changes nothing")
	}
	require.True(t, parses(dest.Format, built.Body), "the built body parses")
	red, _ := RedactRequest(built.Body, nil, dest, c)
	requireNoPAN(t, red, c)
	red, _ = RedactResponse(built.Body, nil, c)
	requireNoPAN(t, red, c)
}

// requireNoPAN fails when b holds the card's digits, plain or with
// separators.
func requireNoPAN(t *testing.T, b []byte, c card.Card) {
	t.Helper()
	require.NotContains(t, string(b), c.PAN.Reveal())
	require.False(t, containsKnownPAN(string(b), c.PAN), "the PAN with separators")
}

// requireNoCVCValue fails when a JSON document holds a string or number
// equal to the card's CVC.
func requireNoCVCValue(t *testing.T, b []byte, c card.Card) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			return
		}
		switch v := tok.(type) {
		case string:
			require.NotEqual(t, c.CVC.Reveal(), strings.TrimSpace(v))
		case json.Number:
			require.NotEqual(t, c.CVC.Reveal(), string(v))
		}
	}
}

// parses reports whether b parses in format f as the rewriters read it.
func parses(f Format, b []byte) bool {
	switch f {
	case FormatJSON:
		return json.Valid(b)
	case FormatXML:
		dec := xml.NewDecoder(bytes.NewReader(b))
		for {
			if _, err := dec.Token(); err != nil {
				return err == io.EOF
			}
		}
	}
	_, err := rewriteForm(b, func(slot) (edit, bool) { return edit{}, false })
	return err == nil
}
