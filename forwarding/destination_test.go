package forwarding

import (
	"testing"
	"time"

	"github.com/cardvault/cardvault/vault/card"
	"github.com/stretchr/testify/assert"
)

func TestValidate(t *testing.T) {
	secret := card.NewSecret("k")
	tests := []struct {
		name   string
		change func(d *Destination)
		param  string // "" for valid
	}{
		{"valid", func(*Destination) {}, ""},
		{"prefix pattern", func(d *Destination) { d.URL = "https://api.processor.example/v1/*" }, ""},
		{"port", func(d *Destination) { d.URL = "https://api.processor.example:8443/v1" }, ""},
		{"max timeout", func(d *Destination) { d.TimeoutMs = 60000 }, ""},
		{"combined expiry", func(d *Destination) { d.Fields[CardExpiry] = []Field{{Path: "e", Expiry: "MM/YY"}} }, ""},
		{"signature header", func(d *Destination) {
			d.Signature = &Signature{Secret: secret, Encoding: "hex", Header: "X-Sig"}
		}, ""},
		{"signature field", func(d *Destination) {
			d.Signature = &Signature{Secret: secret, Encoding: "base64"}
			d.Fields[RequestSignature] = []Field{{Path: "sig"}}
		}, ""},
		{"remote token path", func(d *Destination) { d.RemoteTokenPath = "data.id" }, ""},

		{"http", func(d *Destination) { d.URL = "http://api.processor.example/v1" }, "url"},
		{"IP literal", func(d *Destination) { d.URL = "https://93.184.215.14/v1" }, "url"},
		{"loopback", func(d *Destination) { d.URL = "https://localhost/v1" }, "url"},
		{"userinfo", func(d *Destination) { d.URL = "https://u@api.processor.example/v1" }, "url"},
		{"query", func(d *Destination) { d.URL = "https://api.processor.example/v1?a=b" }, "url"},
		{"empty query", func(d *Destination) { d.URL = "https://api.processor.example/v1?" }, "url"},
		{"fragment", func(d *Destination) { d.URL = "https://api.processor.example/v1#x" }, "url"},
		{"star not after slash", func(d *Destination) { d.URL = "https://api.processor.example/v1*" }, "url"},
		{"star inside", func(d *Destination) { d.URL = "https://api.processor.example/*/x" }, "url"},
		{"dot segment", func(d *Destination) { d.URL = "https://api.processor.example/v1/../x" }, "url"},
		{"encoded slash", func(d *Destination) { d.URL = "https://api.processor.example/v1%2fx" }, "url"},
		{"empty", func(d *Destination) { d.URL = "" }, "url"},
		{"format", func(d *Destination) { d.Format = "yaml" }, "format"},
		{"no fields", func(d *Destination) { d.Fields = nil }, "fields"},
		{"unknown replacement", func(d *Destination) { d.Fields["card_pin"] = []Field{{Path: "pin"}} }, "fields"},
		{"two number fields", func(d *Destination) { d.Fields[CardNumber] = []Field{{Path: "a"}, {Path: "b"}} }, "fields.card_number"},
		{"empty field list", func(d *Destination) { d.Fields[CardCVC] = nil }, "fields.card_cvc"},
		{"empty path", func(d *Destination) { d.Fields[CardCVC] = []Field{{Path: ""}} }, "fields.card_cvc"},
		{"empty segment", func(d *Destination) { d.Fields[CardCVC] = []Field{{Path: "card..cvc"}} }, "fields.card_cvc"},
		{"shared path", func(d *Destination) { d.Fields[CardCVC] = []Field{{Path: "card.number"}} }, "fields"},
		{"expiry on a number", func(d *Destination) { d.Fields[CardNumber] = []Field{{Path: "n", Expiry: "MM"}} }, "fields.card_number"},
		{"no expiry layout", func(d *Destination) { d.Fields[CardExpiry] = []Field{{Path: "e"}} }, "fields.card_expiry"},
		{"unknown layout", func(d *Destination) { d.Fields[CardExpiry] = []Field{{Path: "e", Expiry: "DD"}} }, "fields.card_expiry"},
		{"month alone", func(d *Destination) { d.Fields[CardExpiry] = []Field{{Path: "e", Expiry: "MM"}} }, "fields.card_expiry"},
		{"two months", func(d *Destination) {
			d.Fields[CardExpiry] = []Field{{Path: "m", Expiry: "MM"}, {Path: "y", Expiry: "M"}}
		}, "fields.card_expiry"},
		{"combined twice", func(d *Destination) {
			d.Fields[CardExpiry] = []Field{{Path: "m", Expiry: "MM/YY"}, {Path: "y", Expiry: "YYYY"}}
		}, "fields.card_expiry"},
		{"three expiry fields", func(d *Destination) {
			d.Fields[CardExpiry] = []Field{{Path: "m", Expiry: "MM"}, {Path: "y", Expiry: "YYYY"}, {Path: "z", Expiry: "YY"}}
		}, "fields.card_expiry"},
		{"secret header name", func(d *Destination) { d.SecretHeaders = []string{"X Key"} }, "secret_headers"},
		{"negative timeout", func(d *Destination) { d.TimeoutMs = -1 }, "timeout_ms"},
		{"timeout over a minute", func(d *Destination) { d.TimeoutMs = 60001 }, "timeout_ms"},
		{"signature field without rule", func(d *Destination) { d.Fields[RequestSignature] = []Field{{Path: "sig"}} }, "signature"},
		{"signature encoding", func(d *Destination) {
			d.Signature = &Signature{Secret: secret, Encoding: "HEX", Header: "X-Sig"}
		}, "signature.encoding"},
		{"signature secret", func(d *Destination) { d.Signature = &Signature{Encoding: "hex", Header: "X-Sig"} }, "signature.secret"},
		{"signature nowhere", func(d *Destination) { d.Signature = &Signature{Secret: secret, Encoding: "hex"} }, "signature.header"},
		{"signature in two places", func(d *Destination) {
			d.Signature = &Signature{Secret: secret, Encoding: "hex", Header: "X-Sig"}
			d.Fields[RequestSignature] = []Field{{Path: "sig"}}
		}, "signature.header"},
		{"signature header name", func(d *Destination) {
			d.Signature = &Signature{Secret: secret, Encoding: "hex", Header: "X:Sig"}
		}, "signature.header"},
		{"remote token path", func(d *Destination) { d.RemoteTokenPath = "data..id" }, "remote_token_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := jsonDest()
			tt.change(&d)
			err := d.Validate(false)
			if tt.param == "" {
				assert.NoError(t, err)
				return
			}
			requireVaultError(t, err, CodeInvalidDestination, tt.param)
		})
	}
}

func TestValidatePaths(t *testing.T) {
	tests := []struct {
		format Format
		path   string
		ok     bool
	}{
		{FormatJSON, "card.number", true},
		{FormatJSON, "items.0.*", true},
		{FormatJSON, ".card", false},
		{FormatForm, "card[number]", true},
		{FormatXML, "paymentService/submit/order/paymentDetails/VISA-SSL/cardNumber", true},
		{FormatXML, "/a/b@attr", true},
		{FormatXML, "a/*/c", true},
		{FormatXML, "a/b@", false},
		{FormatXML, "a/@x", false},
		{FormatXML, "a//b", false},
		{FormatXML, "a/1b", false},
		{FormatXML, "a/b c", false},
		{FormatXML, "a@x/b", false},
	}
	for _, tt := range tests {
		d := Destination{URL: "https://api.processor.example/x", Format: tt.format,
			Fields: map[Replacement][]Field{CardNumber: {{Path: tt.path}}}}
		err := d.Validate(false)
		if tt.ok {
			assert.NoError(t, err, tt.path)
		} else {
			requireVaultError(t, err, CodeInvalidDestination, "fields.card_number")
		}
	}
}

func TestValidateLoopback(t *testing.T) {
	for _, u := range []string{"http://localhost:8080/cde-import", "https://127.0.0.1:8443/x", "http://[::1]:8080/*"} {
		d := jsonDest()
		d.URL = u
		assert.NoError(t, d.Validate(true), u)
		requireVaultError(t, d.Validate(false), CodeInvalidDestination, "url")
	}
}

func TestTimeout(t *testing.T) {
	assert.Equal(t, 30*time.Second, Destination{}.Timeout())
	assert.Equal(t, 15*time.Second, Destination{TimeoutMs: 15000}.Timeout())
	p, _ := PresetByName("stripe_own_vault")
	assert.Equal(t, 15*time.Second, p.Timeout(), "a vault destination: 15 s, as Stripe")
}
