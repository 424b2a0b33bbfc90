package forwarding

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildKeepsBlankTypes fills blanks of each JSON type: a string stays a
// string, a number becomes a number when the value is one, null becomes a
// string.
func TestBuildKeepsBlankTypes(t *testing.T) {
	tests := []struct {
		name   string
		card   card.Card
		fields map[Replacement][]Field
		body   string
		want   string
	}{
		{"strings", visa(t), nil,
			`{"card":{"number":"","exp_month":"","exp_year":"","cvc":"","name":""}}`,
			`{"card":{"number":"4242424242424242","exp_month":"03","exp_year":"2030","cvc":"123","name":"First Last"}}`},
		{"numbers", visa(t), nil,
			`{"card":{"number":0,"exp_month":0,"exp_year":0,"cvc":0,"name":0}}`,
			`{"card":{"number":4242424242424242,"exp_month":3,"exp_year":2030,"cvc":123,"name":"First Last"}}`},
		{"nulls", visa(t), nil,
			`{"card":{"number":null,"exp_month":null,"exp_year":null,"cvc":null,"name":null}}`,
			`{"card":{"number":"4242424242424242","exp_month":"03","exp_year":"2030","cvc":"123","name":"First Last"}}`},
		{"leading zero CVC stays whole as a string", testCard(t, amexPAN, "11", "2031", "0123", "A"), nil,
			`{"card":{"number":0,"cvc":0}}`,
			`{"card":{"number":378282246310005,"cvc":"0123"}}`},
		{"non-blank values are replaced too", visa(t), nil,
			`{"card":{"number":"xxxx","exp_month":12,"name":"placeholder"}}`,
			`{"card":{"number":"4242424242424242","exp_month":3,"name":"First Last"}}`},
		{"objects, arrays and booleans are left alone", visa(t), nil,
			`{"card":{"number":{"a":""},"exp_month":[""],"exp_year":false,"cvc":true}}`,
			`{"card":{"number":{"a":""},"exp_month":[""],"exp_year":false,"cvc":true}}`},
		{"combined layouts", visa(t), map[Replacement][]Field{CardExpiry: {{Path: "exp", Expiry: "MM/YY"}}},
			`{"exp":0}`, `{"exp":"03/30"}`},
		{"YYMM into a number", visa(t), map[Replacement][]Field{CardExpiry: {{Path: "exp", Expiry: "YYMM"}}},
			`{"exp":0}`, `{"exp":3003}`},
		{"MMYY with a leading zero stays a string", visa(t), map[Replacement][]Field{CardExpiry: {{Path: "exp", Expiry: "MMYY"}}},
			`{"exp":0}`, `{"exp":"0330"}`},
		{"YYYY-MM", visa(t), map[Replacement][]Field{CardExpiry: {{Path: "exp", Expiry: "YYYY-MM"}}},
			`{"exp":""}`, `{"exp":"2030-03"}`},
		{"M and YY", visa(t), map[Replacement][]Field{CardExpiry: {{Path: "m", Expiry: "M"}, {Path: "y", Expiry: "YY"}}},
			`{"m":"","y":""}`, `{"m":"3","y":"30"}`},
		{"MM/YYYY", visa(t), map[Replacement][]Field{CardExpiry: {{Path: "e", Expiry: "MM/YYYY"}}},
			`{"e":""}`, `{"e":"03/2030"}`},
	}
	for _, tt := range tests {
		dest := jsonDest()
		if tt.fields != nil {
			dest.Fields = tt.fields
		}
		built, err := Build(dest, []byte(tt.body), allCard, tt.card)
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, string(built.Body), tt.name)
		assert.True(t, json.Valid(built.Body), tt.name)
	}
}

// TestBuildFillsOnlyWhatIsAskedAndPresent checks that absent fields are not
// added and unrequested ones stay blank.
func TestBuildFillsOnlyWhatIsAskedAndPresent(t *testing.T) {
	tests := []struct {
		name         string
		replacements []string
		body, want   string
	}{
		{"absent fields are not added", allCard,
			`{"card":{"number":""}}`, `{"card":{"number":"4242424242424242"}}`},
		{"no card object at all", allCard,
			`{"amount":100}`, `{"amount":100}`},
		{"only what is requested", []string{"card_number"},
			`{"card":{"number":"","exp_month":"","cvc":"","name":""}}`,
			`{"card":{"number":"4242424242424242","exp_month":"","cvc":"","name":""}}`},
		{"nothing requested", nil,
			`{"card":{"number":""}}`, `{"card":{"number":""}}`},
		{"same field at another depth is not the field", allCard,
			`{"number":"","card":{"card":{"number":""}}}`, `{"number":"","card":{"card":{"number":""}}}`},
		{"duplicate keys are all filled", []string{"card_number"},
			`{"card":{"number":"","number":""}}`, `{"card":{"number":"4242424242424242","number":"4242424242424242"}}`},
	}
	for _, tt := range tests {
		built, err := Build(jsonDest(), []byte(tt.body), tt.replacements, visa(t))
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, string(built.Body), tt.name)
	}
}

// TestBuildKeepsTheRestByteForByte rewrites a body with odd spacing, key
// order, escapes and number spellings, and expects only the blanks to
// change.
func TestBuildKeepsTheRestByteForByte(t *testing.T) {
	body := "{ \"z\" : 1.50e2,\n\t\"card\" : { \"name\" : \"\" , \"number\":\"\"},\"a\":\"caf\\u00e9 <&>\", \"list\":[1, {\"n\": null}] }\n"
	want := strings.Replace(strings.Replace(body, `"name" : ""`, `"name" : "Zoë <&> \"Q\""`, 1), `"number":""`, `"number":"4242424242424242"`, 1)
	built, err := Build(jsonDest(), []byte(body), allCard, testCard(t, visaPAN, "03", "2030", "123", `Zoë <&> "Q"`))
	require.NoError(t, err)
	assert.Equal(t, want, string(built.Body))
}

// TestBuildPaths uses array indices and wildcards.
func TestBuildPaths(t *testing.T) {
	dest := jsonDest()
	dest.Fields = map[Replacement][]Field{
		CardNumber: {{Path: "sources.1.pan"}},
		CardCVC:    {{Path: "*.security.code"}},
	}
	body := `{"sources":[{"pan":""},{"pan":""}],"x":{"security":{"code":""}},"y":{"security":{"code":""}}}`
	built, err := Build(dest, []byte(body), allCard, visa(t))
	require.NoError(t, err)
	assert.Equal(t, `{"sources":[{"pan":""},{"pan":"4242424242424242"}],"x":{"security":{"code":"123"}},"y":{"security":{"code":"123"}}}`, string(built.Body))
}

// TestBuildForm fills a form body, keeping the other pairs as written.
func TestBuildForm(t *testing.T) {
	dest := Destination{URL: "https://api.processor.example/v1", Format: FormatForm, Fields: map[Replacement][]Field{
		CardNumber:     {{Path: "card[number]"}},
		CardExpiry:     {{Path: "card[exp]", Expiry: "MM/YY"}},
		CardCVC:        {{Path: "card[cvc]"}},
		CardholderName: {{Path: "name"}},
	}}
	body := "amount=10%2E00&card%5Bnumber%5D=&card[exp]&name=x&card[cvc]=&&note=a+b%26c"
	built, err := Build(dest, []byte(body), allCard, testCard(t, visaPAN, "03", "2030", "123", "Zoë & Co"))
	require.NoError(t, err)
	assert.Equal(t, "amount=10%2E00&card%5Bnumber%5D=4242424242424242&card[exp]=03%2F30&name=Zo%C3%AB+%26+Co&card[cvc]=123&&note=a+b%26c", string(built.Body))
	q, err := url.ParseQuery(string(built.Body))
	require.NoError(t, err)
	assert.Equal(t, "Zoë & Co", q.Get("name"))
}

// TestBuildXML fills element text (empty, self-closing, whitespace, CDATA,
// prefixed) and attributes.
func TestBuildXML(t *testing.T) {
	dest := Destination{URL: "https://api.processor.example/xml", Format: FormatXML, Fields: map[Replacement][]Field{
		CardNumber:     {{Path: "/req/card/pan"}},
		CardExpiry:     {{Path: "req/card/exp@value", Expiry: "MMYY"}},
		CardCVC:        {{Path: "req/card/cvc"}},
		CardholderName: {{Path: "req/card/name"}},
	}}
	tests := []struct{ name, body, want string }{
		{"empty and self-closing",
			`<req><card><pan></pan><exp value=""/><cvc/><name> </name></card></req>`,
			`<req><card><pan>4242424242424242</pan><exp value="0330"/><cvc>123</cvc><name>A &amp; B</name></card></req>`},
		{"prefixed elements and CDATA",
			`<p:req xmlns:p="urn:x"><p:card><p:pan><![CDATA[]]></p:pan><p:cvc/></p:card></p:req>`,
			`<p:req xmlns:p="urn:x"><p:card><p:pan>4242424242424242</p:pan><p:cvc>123</p:cvc></p:card></p:req>`},
		{"a parent element is no slot",
			`<req><card><pan><inner/></pan></card></req>`,
			`<req><card><pan><inner/></pan></card></req>`},
		{"absent attribute not added",
			`<req><card><exp/></card></req>`,
			`<req><card><exp/></card></req>`},
	}
	for _, tt := range tests {
		built, err := Build(dest, []byte(tt.body), allCard, testCard(t, visaPAN, "03", "2030", "123", "A & B"))
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, string(built.Body), tt.name)
	}
}

// TestBuildErrors checks the error of each bad input, and that none holds
// card data.
func TestBuildErrors(t *testing.T) {
	noCVC := testCard(t, visaPAN, "03", "2030", "", "")
	xmlDest := Destination{Format: FormatXML, Fields: map[Replacement][]Field{CardNumber: {{Path: "a/b"}}}}
	formDest := Destination{Format: FormatForm, Fields: map[Replacement][]Field{CardNumber: {{Path: "n"}}}}
	tests := []struct {
		name         string
		dest         Destination
		body         string
		replacements []string
		card         card.Card
		code, param  string
	}{
		{"unknown replacement", jsonDest(), `{}`, []string{"card_number", "card_pin"}, visa(t), CodeInvalidParameter, "replacements"},
		{"a PAN as a replacement is not echoed", jsonDest(), `{}`, []string{visaPAN}, visa(t), CodeInvalidParameter, "replacements"},
		{"invalid JSON", jsonDest(), `{"card":`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"two JSON values", jsonDest(), `{} {}`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"trailing garbage", jsonDest(), `{}x`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"empty JSON body", jsonDest(), ``, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"invalid XML", xmlDest, `<a><b></a>`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"XML with two roots", xmlDest, `<a/><a/>`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"XML unknown entity", xmlDest, `<a><b>&x;</b></a>`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"bad form escape", formDest, `n=%zz`, allCard, visa(t), CodeInvalidParameter, "request[body]"},
		{"CVC gone but the body has the field", jsonDest(), `{"card":{"cvc":""}}`, allCard, noCVC, CodeCVCUnavailable, "replacements"},
		{"signature without a rule", jsonDest(), `{}`, []string{"request_signature"}, visa(t), CodeInvalidParameter, "replacements"},
	}
	for _, tt := range tests {
		_, err := Build(tt.dest, []byte(tt.body), tt.replacements, tt.card)
		e := requireVaultError(t, err, tt.code, tt.param)
		assert.NotContains(t, e.Error(), visaPAN, tt.name)
		assert.NotContains(t, e.Error(), "123", tt.name)
	}

	built, err := Build(jsonDest(), []byte(`{"card":{"number":""}}`), allCard, noCVC)
	require.NoError(t, err, "no CVC field in the body: nothing is missing")
	assert.JSONEq(t, `{"card":{"number":"4242424242424242"}}`, string(built.Body))
	built, err = Build(jsonDest(), []byte(`{"card":{"name":""}}`), allCard, noCVC)
	require.NoError(t, err)
	assert.Equal(t, `{"card":{"name":""}}`, string(built.Body), "no name: its blank stays")
}

// TestBuildSignature signs into a header (hex) and into a body field
// (base64) and checks each signature as a receiver would.
func TestBuildSignature(t *testing.T) {
	secret := card.NewSecret("whsec_test_secret")
	mac := func(body string) []byte {
		m := hmac.New(sha256.New, []byte("whsec_test_secret"))
		m.Write([]byte(body))
		return m.Sum(nil)
	}
	body := `{"card":{"number":"","cvc":""},"signature":""}`
	filled := `{"card":{"number":"4242424242424242","cvc":"123"},"signature":""}`

	dest := jsonDest()
	dest.Signature = &Signature{Secret: secret, Encoding: "hex", Header: "X-Signature"}
	built, err := Build(dest, []byte(body), append([]string{"request_signature"}, allCard...), visa(t))
	require.NoError(t, err)
	assert.Equal(t, filled, string(built.Body))
	assert.Equal(t, hex.EncodeToString(mac(filled)), built.Header.Get("X-Signature"))

	dest = jsonDest()
	dest.Signature = &Signature{Secret: secret, Encoding: "base64"}
	dest.Fields[RequestSignature] = []Field{{Path: "signature"}}
	require.NoError(t, dest.Validate(false))
	built, err = Build(dest, []byte(body), append(allCard, "request_signature"), visa(t))
	require.NoError(t, err)
	var got struct{ Signature string }
	require.NoError(t, json.Unmarshal(built.Body, &got))
	assert.Equal(t, base64.StdEncoding.EncodeToString(mac(filled)), got.Signature, "signed with the field blank")
	assert.Empty(t, built.Header)

	built, err = Build(dest, []byte(body), allCard, visa(t))
	require.NoError(t, err)
	assert.Equal(t, filled, string(built.Body), "no signature unless request_signature is asked for")
}
