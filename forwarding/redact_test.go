package forwarding

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRedactRequest redacts a built Adyen request as Stripe's guide shows
// it: number first six and last four, CVC ***, expiry and name kept,
// credentials out of the headers.
func TestRedactRequest(t *testing.T) {
	p, _ := PresetByName("adyen_payments")
	dest := p.DestinationFor("https://test-checkout-live.adyenpayments.com/v70/payments")
	dest.SecretHeaders = append(dest.SecretHeaders, "Destination-API-Key")
	built, err := Build(dest, []byte(adyenBody), allCard, visa(t))
	require.NoError(t, err)
	header := http.Header{
		"Content-Type":                {"application/json"},
		"X-Api-Key":                   {"adyen_key_secret"},
		"Destination-Api-Key":         {"other_secret"},
		"Authorization":               {"Basic c2VjcmV0"},
		"Destination-Idempotency-Key": {"idem-1"},
		"X-Note":                      {"card 4242 4242 4242 4242 cvc 123"},
	}
	body, red := RedactRequest(built.Body, header, dest, visa(t))
	assert.JSONEq(t, `{"amount":{"value":1000,"currency":"usd"},"paymentMethod":{"type":"scheme","number":"424242******4242","expiryMonth":"03","expiryYear":"2030","cvc":"***","holderName":"First Last"},"reference":"{{REFERENCE_ID}}"}`, string(body))
	assert.Equal(t, http.Header{
		"Content-Type":                {"application/json"},
		"X-Api-Key":                   {"[REDACTED]"},
		"Destination-Api-Key":         {"[REDACTED]"},
		"Authorization":               {"[REDACTED]"},
		"Destination-Idempotency-Key": {"idem-1"},
		"X-Note":                      {"card 4242 42** **** 4242 cvc ***"},
	}, red)
	assert.Equal(t, "adyen_key_secret", header.Get("X-Api-Key"), "the caller's headers are not changed")

	amex := testCard(t, amexPAN, "11", "2031", "1234", "")
	built, err = Build(jsonDest(), []byte(`{"card":{"number":0,"cvc":0},"note":"1234"}`), allCard, amex)
	require.NoError(t, err)
	body, _ = RedactRequest(built.Body, nil, jsonDest(), amex)
	assert.Equal(t, `{"card":{"number":"378282*****0005","cvc":"***"},"note":"1234"}`, string(body),
		"numbers become masked strings; the merchant's own 1234 elsewhere is not the CVC field")
}

// TestRedactRequestFormats redacts form and XML requests.
func TestRedactRequestFormats(t *testing.T) {
	for _, name := range []string{"stripe_payment_methods", "worldpay_xml"} {
		p, _ := PresetByName(name)
		dest := p.DestinationFor("")
		body := map[string]string{
			"stripe_payment_methods": "card[number]=&card[cvc]=&card[exp_month]=",
			"worldpay_xml":           worldpayBody,
		}[name]
		built, err := Build(dest, []byte(body), allCard, visa(t))
		require.NoError(t, err)
		red, _ := RedactRequest(built.Body, nil, dest, visa(t))
		assert.NotContains(t, string(red), visaPAN, name)
		assert.Contains(t, string(red), "424242******4242", name)
		assert.NotContains(t, string(red), "123", name)
		assert.Contains(t, string(red), "***", name)
	}
}

// TestRedactResponse masks a destination that echoes the PAN and the CVC
// in many forms, and leaves what only looks like them.
func TestRedactResponse(t *testing.T) {
	c := visa(t)
	tests := []struct{ name, in, want string }{
		{"PAN and CVC echoed as strings",
			`{"card":{"number":"4242424242424242","cvc":"123"}}`,
			`{"card":{"number":"424242******4242","cvc":"***"}}`},
		{"as numbers",
			`{"card":{"number":4242424242424242,"cvc":123}}`,
			`{"card":{"number":"424242******4242","cvc":"***"}}`},
		{"escaped in a string",
			`{"pan":"\u00342424242424242\u00342"}`,
			`{"pan":"424242******4242"}`},
		{"spaced and dashed",
			`{"m":"card 4242 4242 4242 4242 and 4242-4242-4242-4242"}`,
			`{"m":"card 4242 42** **** 4242 and 4242-42**-****-4242"}`},
		{"inside a longer digit run",
			`{"ref":"9424242424242424242"}`,
			`{"ref":"9424242********4242"}`}, // two overlapping occurrences
		{"another card number",
			`{"other":"5555555555554444"}`,
			`{"other":"555555******4444"}`},
		{"CVC inside a message",
			`{"error":"CVC 123 does not match","code":"cvc=123;"}`,
			`{"error":"CVC *** does not match","code":"cvc=***;"}`},
		{"what only looks like the CVC stays",
			`{"123":"x","amount":1123,"fee":123.5,"rate":"1.123","total":"123,45","id":"ab1234","n":41234}`,
			`{"123":"x","amount":1123,"fee":123.5,"rate":"1.123","total":"123,45","id":"ab1234","n":41234}`},
		{"a value equal to the CVC is masked wherever it stands (fail safe)",
			`{"amount":123,"ref":"order-123"}`,
			`{"amount":"***","ref":"order-***"}`},
		{"XML",
			`<r a="4242424242424242"><cvc>123</cvc><pan> 4242424242424242 </pan><n123>x</n123></r>`,
			`<r a="424242******4242"><cvc>***</cvc><pan> 424242******4242 </pan><n123>x</n123></r>`},
		{"plain text",
			"declined: card 4242424242424242 cvv 123, amount 1123",
			"declined: card 424242******4242 cvv ***, amount 1123"},
		{"not quite JSON",
			`{"cvc":123,"pan":"4242424242424242"`,
			`{"cvc":***,"pan":"424242******4242"`},
	}
	for _, tt := range tests {
		got, _ := RedactResponse([]byte(tt.in), nil, c)
		assert.Equal(t, tt.want, string(got), tt.name)
		assert.NotContains(t, string(got), visaPAN, tt.name)
		if json.Valid([]byte(tt.in)) {
			assert.True(t, json.Valid(got), "%s: stays valid JSON", tt.name)
		}
	}

	_, h := RedactResponse(nil, http.Header{"X-Echo": {"4242424242424242"}, "X-Cvc": {"123"}, "Set-Cookie": {"a=1"}}, c)
	assert.Equal(t, http.Header{"X-Echo": {"424242******4242"}, "X-Cvc": {"***"}, "Set-Cookie": {"a=1"}}, h)

	noCVC := testCard(t, visaPAN, "03", "2030", "", "")
	got, _ := RedactResponse([]byte(`{"cvc":123}`), nil, noCVC)
	assert.Equal(t, `{"cvc":123}`, string(got), "no CVC held: nothing to look for")
}

// TestScrubPANOverlapping masks overlapping occurrences of the PAN.
func TestScrubPANOverlapping(t *testing.T) {
	// 4242 4242 … with a shared head and tail: 4242424242424242424242.
	in := strings.Repeat("42", 11)
	out := string(scrubPAN([]byte(in), visa(t).PAN))
	assert.NotContains(t, out, visaPAN)
	assert.Len(t, out, len(in))
}

func TestRemoteTokenID(t *testing.T) {
	p, _ := PresetByName("braintree_graphql")
	id, ok := RemoteTokenID(p.Destination, []byte(`{"data":{"tokenizeCreditCard":{"paymentMethod":{"id":"cGF5bWVudG1ldGhvZF9jY18x"}}}}`))
	assert.True(t, ok)
	assert.Equal(t, "cGF5bWVudG1ldGhvZF9jY18x", id)
	_, ok = RemoteTokenID(p.Destination, []byte(`{"errors":[{"message":"x"}]}`))
	assert.False(t, ok)
	_, ok = RemoteTokenID(p.Destination, []byte(`not json`))
	assert.False(t, ok)
	w, _ := PresetByName("worldpay_xml")
	_, ok = RemoteTokenID(w.Destination, []byte(`{"id":"x"}`))
	assert.False(t, ok, "no path configured")
}
