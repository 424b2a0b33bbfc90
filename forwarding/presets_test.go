package forwarding

import (
	"encoding/json"
	"encoding/xml"
	"net/url"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// presetCase is one preset built with the test Visa and parsed back.
type presetCase struct {
	name  string
	url   string // for presets without a fixed URL
	body  string
	check func(t *testing.T, out []byte)
}

// adyenBody is the body of Stripe's Vault and Forward guide, as JSON.
const adyenBody = `{"amount":{"value":1000,"currency":"usd"},"paymentMethod":{"type":"scheme","number":"","expiryMonth":"","expiryYear":"","cvc":"","holderName":""},"reference":"{{REFERENCE_ID}}"}`

// worldpayBody is a Worldpay paymentService order with blank card fields.
const worldpayBody = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE paymentService PUBLIC "-//Worldpay//DTD Worldpay PaymentService v1//EN" "http://dtd.worldpay.com/paymentService_v1.dtd">
<paymentService version="1.4" merchantCode="MERCHANT">
  <submit>
    <order orderCode="order-1">
      <description>test order</description>
      <amount currencyCode="GBP" exponent="2" value="5000"/>
      <paymentDetails>
        <CARD-SSL>
          <cardNumber></cardNumber>
          <expiryDate>
            <date month="" year=""/>
          </expiryDate>
          <cardHolderName/>
          <cvc/>
        </CARD-SSL>
      </paymentDetails>
    </order>
  </submit>
</paymentService>`

// worldpayOrder is the part of a Worldpay order the test reads back.
type worldpayOrder struct {
	Order struct {
		Code   string `xml:"orderCode,attr"`
		Amount struct {
			Value string `xml:"value,attr"`
		} `xml:"amount"`
		Card worldpayCard `xml:"paymentDetails>CARD-SSL"`
		Visa worldpayCard `xml:"paymentDetails>VISA-SSL"`
	} `xml:"submit>order"`
}

// worldpayCard is a Worldpay card element.
type worldpayCard struct {
	Number string `xml:"cardNumber"`
	Date   struct {
		Month string `xml:"month,attr"`
		Year  string `xml:"year,attr"`
	} `xml:"expiryDate>date"`
	Holder string `xml:"cardHolderName"`
	CVC    string `xml:"cvc"`
}

func presetCases(t *testing.T) []presetCase {
	vaultBody, err := os.ReadFile("../testdata/stripe/forward_body_template.json")
	require.NoError(t, err)
	return []presetCase{
		{"stripe_own_vault", "https://vault.example.com/cde-import", string(vaultBody), func(t *testing.T, out []byte) {
			var b struct {
				Metadata map[string]string
				Card     map[string]any
			}
			require.NoError(t, json.Unmarshal(out, &b))
			assert.Equal(t, map[string]any{"number": visaPAN, "exp_month": "03", "exp_year": "2030", "cvc": "123", "name": "First Last"}, b.Card)
			assert.Equal(t, "STRIPE_PAYMENT_METHOD_ID", b.Metadata["business_key"])
		}},
		{"stripe_payment_methods", "", "type=card&card%5Bnumber%5D=&card[exp_month]=&card[exp_year]=&card[cvc]=&billing_details[name]=&metadata[order]=42", func(t *testing.T, out []byte) {
			q, err := url.ParseQuery(string(out))
			require.NoError(t, err)
			assert.Equal(t, url.Values{"type": {"card"}, "card[number]": {visaPAN}, "card[exp_month]": {"3"}, "card[exp_year]": {"2030"},
				"card[cvc]": {"123"}, "billing_details[name]": {"First Last"}, "metadata[order]": {"42"}}, q)
		}},
		{"adyen_payments", "https://test-checkout-live.adyenpayments.com/v70/payments", adyenBody, func(t *testing.T, out []byte) {
			var b map[string]any
			require.NoError(t, json.Unmarshal(out, &b))
			assert.Equal(t, map[string]any{"type": "scheme", "number": visaPAN, "expiryMonth": "03", "expiryYear": "2030", "cvc": "123", "holderName": "First Last"}, b["paymentMethod"])
			assert.Equal(t, map[string]any{"value": 1000.0, "currency": "usd"}, b["amount"])
			assert.Equal(t, "{{REFERENCE_ID}}", b["reference"])
		}},
		{"checkout_payments", "", `{"source":{"type":"card","number":"","expiry_month":0,"expiry_year":0,"cvv":"","name":""},"amount":1000,"currency":"USD"}`, func(t *testing.T, out []byte) {
			var b struct {
				Source map[string]any
				Amount int
			}
			require.NoError(t, json.Unmarshal(out, &b))
			assert.Equal(t, map[string]any{"type": "card", "number": visaPAN, "expiry_month": 3.0, "expiry_year": 2030.0, "cvv": "123", "name": "First Last"}, b.Source)
			assert.Equal(t, 1000, b.Amount)
		}},
		{"braintree_graphql", "", `{"query":"mutation TokenizeCreditCard($input: TokenizeCreditCardInput!) { tokenizeCreditCard(input: $input) { paymentMethod { id } } }","variables":{"input":{"creditCard":{"number":"","expirationMonth":"","expirationYear":"","cvv":"","cardholderName":""}}}}`, func(t *testing.T, out []byte) {
			var b struct {
				Variables struct {
					Input struct{ CreditCard map[string]any }
				}
			}
			require.NoError(t, json.Unmarshal(out, &b))
			assert.Equal(t, map[string]any{"number": visaPAN, "expirationMonth": "03", "expirationYear": "2030", "cvv": "123", "cardholderName": "First Last"}, b.Variables.Input.CreditCard)
		}},
		{"worldpay_xml", "", worldpayBody, func(t *testing.T, out []byte) {
			var o worldpayOrder
			require.NoError(t, xml.Unmarshal(out, &o))
			c := o.Order.Card
			assert.Equal(t, visaPAN, c.Number)
			assert.Equal(t, "03", c.Date.Month)
			assert.Equal(t, "2030", c.Date.Year)
			assert.Equal(t, "First Last", c.Holder)
			assert.Equal(t, "123", c.CVC)
			assert.Equal(t, "order-1", o.Order.Code)
			assert.Equal(t, "5000", o.Order.Amount.Value)
		}},
	}
}

func TestPresetsBuild(t *testing.T) {
	cases := presetCases(t)
	require.Len(t, cases, len(Presets()), "every preset has a case")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := PresetByName(tc.name)
			require.True(t, ok)
			assert.NotEmpty(t, p.Description)
			dest := p.DestinationFor(tc.url)
			require.NoError(t, dest.Validate(false))
			built, err := Build(dest, []byte(tc.body), allCard, visa(t))
			require.NoError(t, err)
			tc.check(t, built.Body)
			assert.Empty(t, built.Header)

			red, _ := RedactRequest(built.Body, nil, dest, visa(t))
			assert.NotContains(t, string(red), visaPAN)
			assert.Contains(t, string(red), "424242******4242")
			assert.Contains(t, string(red), "***")
		})
	}
}

func TestPresetsAreData(t *testing.T) {
	names := []string{}
	for _, p := range Presets() {
		names = append(names, p.Name)
		assert.True(t, p.URL != "" || p.URLExample != "", "%s: a URL or an example", p.Name)
		if p.URL != "" {
			assert.NoError(t, p.DestinationFor("").Validate(false), p.Name)
		}
	}
	assert.Equal(t, []string{"stripe_own_vault", "stripe_payment_methods", "adyen_payments", "checkout_payments", "braintree_graphql", "worldpay_xml"}, names)

	p, _ := PresetByName("adyen_payments")
	p.Fields[CardNumber][0].Path = "changed"
	again, _ := PresetByName("adyen_payments")
	assert.Equal(t, "paymentMethod.number", again.Fields[CardNumber][0].Path, "callers get copies")
	_, ok := PresetByName("nope")
	assert.False(t, ok)
	assert.Panics(t, func() { mustParsePresets([]byte(`{"presets":[{"nme":"typo"}]}`)) })
}

// TestWorldpayBrandElement fills a brand element (VISA-SSL) through the
// preset's wildcard, with single-quoted attributes and a name to escape.
func TestWorldpayBrandElement(t *testing.T) {
	p, _ := PresetByName("worldpay_xml")
	body := `<paymentService version="1.4"><submit><order orderCode="o"><paymentDetails><VISA-SSL>` +
		`<cardNumber/><expiryDate><date month='' year=''/></expiryDate><cardHolderName></cardHolderName>` +
		`</VISA-SSL></paymentDetails></order></submit></paymentService>`
	c := testCard(t, visaPAN, "3", "2030", "", `O'Brien & "Co" <x>`)
	built, err := Build(p.DestinationFor(""), []byte(body), allCard, c)
	require.NoError(t, err, "card_cvc asked, but the body has no cvc element: nothing to miss")
	var o worldpayOrder
	require.NoError(t, xml.Unmarshal(built.Body, &o))
	assert.Equal(t, visaPAN, o.Order.Visa.Number)
	assert.Equal(t, "03", o.Order.Visa.Date.Month)
	assert.Equal(t, "2030", o.Order.Visa.Date.Year)
	assert.Equal(t, `O'Brien & "Co" <x>`, o.Order.Visa.Holder)
	assert.Contains(t, string(built.Body), `<date month='03' year='2030'/>`, "the quotes stay as written")
}
