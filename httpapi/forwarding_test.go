package httpapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// visaNumber is the public Visa test card every forward here sends.
const visaNumber = "4242424242424242"

// forwardingTo lets the test server forward to the given loopback
// destinations (trusting their test certificates), with timeout as the
// egress client's default.
func forwardingTo(timeout time.Duration, dests ...*httptest.Server) func(*vaulttest.Options) {
	return func(o *vaulttest.Options) {
		o.Egress, o.AllowLoopback = vaulttest.LoopbackEgress(timeout, dests...), true
	}
}

// addDestination posts a destination and returns its id.
func (ts *testServer) addDestination(t *testing.T, key, body string) string {
	t.Helper()
	res := ts.do(t, http.MethodPost, "/forwarding/destinations", key, body)
	require.Equal(t, http.StatusCreated, res.status, "%s", res.body)
	return res.json(t)["id"].(string)
}

// tokenize stores the Visa test card under businessKey and returns the token id.
func (ts *testServer) tokenize(t *testing.T, key, businessKey string) string {
	t.Helper()
	res := ts.do(t, http.MethodPost, "/tokens", key, cardBody(businessKey, visaNumber))
	require.Equal(t, http.StatusCreated, res.status, "%s", res.body)
	return res.json(t)["id"].(string)
}

// postForm posts form to path with key as a Bearer token, as stripe-go does.
func (ts *testServer) postForm(t *testing.T, path, key string, form url.Values, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// forwardForm is a forward of pm to dest with Stripe's own-vault body and
// the four card replacements, as stripe-go encodes it.
func forwardForm(pm, dest string) url.Values {
	return url.Values{"payment_method": {pm}, "url": {dest},
		"request[body]":             {`{"metadata":{"business_key":"` + pm + `"},"card":{"number":"","exp_month":"","exp_year":"","cvc":"","name":""}}`},
		"request[headers][0][name]": {"X-API-Key"}, "request[headers][0][value]": {"dest_key_123"},
		"replacements[0]": {"card_number"}, "replacements[1]": {"card_expiry"},
		"replacements[2]": {"card_cvc"}, "replacements[3]": {"cardholder_name"},
		"metadata[order]": {"A-1"}}
}

// counted wraps h, counting the requests it serves.
func counted(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// losingFirstAnswer serves h, but answers the first POST with a 503 after
// h has handled it, as if the answer had been lost on the way: a client
// that retries must not make the vault forward twice.
func losingFirstAnswer(h http.Handler) http.Handler {
	var lost atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && lost.CompareAndSwap(false, true) {
			h.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "lost", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestStripeGoForwardsToASecondVault: a merchant's unchanged stripe-go
// forwarding code, its backend URL set to the vault, sends a stored card to
// another cardvault's /cde-import (vault to vault), retries through a lost
// answer with its own Idempotency-Key without a second forward, and
// retrieves and lists the record.
func TestStripeGoForwardsToASecondVault(t *testing.T) {
	var received atomic.Int64
	other := newTestServer(t)
	otherKey := other.key(t, vault.ScopeTokensCreate, vault.ScopeTokensRead)
	dest := httptest.NewTLSServer(counted(httpapi.New(other.svc, slog.New(slog.DiscardHandler)), &received))
	t.Cleanup(dest.Close)
	ts := newTestServer(t, forwardingTo(5*time.Second, dest))
	key := ts.key(t)
	ts.tokenize(t, key, "pm_1Merchant")
	ts.addDestination(t, key, `{"url":"`+dest.URL+`/cde-import","preset":"stripe_own_vault"}`)
	front := httptest.NewServer(losingFirstAnswer(ts.Server.Config.Handler))
	t.Cleanup(front.Close)
	sc := stripe.NewClient(key, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(front.URL), MaxNetworkRetries: stripe.Int64(2),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})))
	ctx := context.Background()

	params := &stripe.ForwardingRequestCreateParams{
		PaymentMethod: stripe.String("pm_1Merchant"), URL: stripe.String(dest.URL + "/cde-import"),
		Replacements: stripe.StringSlice([]string{"card_number", "card_expiry", "card_cvc", "cardholder_name"}),
		Request: &stripe.ForwardingRequestCreateRequestParams{
			Body: stripe.String(`{"metadata":{"business_key":"pm_1Merchant"},"card":{"number":"","exp_month":"","exp_year":"","cvc":"","name":""}}`),
			Headers: []*stripe.ForwardingRequestCreateRequestHeaderParams{
				{Name: stripe.String("X-API-Key"), Value: stripe.String(otherKey)}}},
		Metadata: map[string]string{"order": "A-1"},
	}
	fr, err := sc.V1ForwardingRequests.Create(ctx, params)
	require.NoError(t, err)

	assert.Equal(t, int64(1), received.Load(), "the lost answer was retried and replayed, not forwarded again")
	assert.Equal(t, "true", fr.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Regexp(t, `^fwdreq_`, fr.ID)
	assert.Equal(t, "forwarding.request", fr.Object)
	assert.False(t, fr.Livemode)
	assert.Equal(t, "pm_1Merchant", fr.PaymentMethod)
	assert.Equal(t, map[string]string{"order": "A-1"}, fr.Metadata)
	assert.Len(t, fr.Replacements, 4)
	assert.Equal(t, int64(http.StatusCreated), fr.ResponseDetails.Status)
	assert.Equal(t, "127.0.0.1", fr.RequestContext.DestinationIPAddress)
	assert.Equal(t, stripe.ForwardingRequestRequestDetailsHTTPMethodPOST, fr.RequestDetails.HTTPMethod)
	assert.Contains(t, fr.RequestDetails.Body, `"number":"424242******4242"`)
	assert.Contains(t, fr.RequestDetails.Body, `"cvc":"***"`)
	for _, h := range fr.RequestDetails.Headers {
		if h.Name == "X-Api-Key" {
			assert.Equal(t, "[REDACTED]", h.Value)
		}
	}

	var copied struct {
		Data []vault.TokenRecord `json:"data"`
	}
	require.NoError(t, json.Unmarshal(other.do(t, http.MethodGet, "/tokens?business_key=pm_1Merchant", otherKey, "").body, &copied))
	require.Len(t, copied.Data, 1, "the second vault stored the card")
	assert.Equal(t, "424242******4242", copied.Data[0].MaskedAccountNumber)
	assert.Equal(t, 2033, copied.Data[0].ExpiryYear)
	assert.True(t, copied.Data[0].CVCAvailable)

	got, err := sc.V1ForwardingRequests.Retrieve(ctx, fr.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, fr.RequestDetails, got.RequestDetails)
	assert.Equal(t, fr.ResponseDetails, got.ResponseDetails)
	var listed []string
	for r, err := range sc.V1ForwardingRequests.List(ctx, &stripe.ForwardingRequestListParams{
		Created: &stripe.RangeQueryParams{GreaterThanOrEqual: fr.Created}}).All(ctx) {
		require.NoError(t, err)
		listed = append(listed, r.ID)
	}
	assert.Equal(t, []string{fr.ID}, listed)
}

// TestForwardToStripeMockPaymentMethods: stripe-mock, which validates every
// request against Stripe's OpenAPI spec, receives a POST /v1/payment_methods
// with the card filled in (form-encoded) and creates the payment method.
func TestForwardToStripeMockPaymentMethods(t *testing.T) {
	mock := vaulttest.StripeMock(t)
	ts := newTestServer(t, forwardingTo(10*time.Second))
	key := ts.key(t)
	ts.tokenize(t, key, "pm_mock")
	ts.addDestination(t, key, `{"url":"`+mock+`/v1/payment_methods","preset":"stripe_payment_methods"}`)
	form := func(replacements ...string) url.Values {
		f := url.Values{"payment_method": {"pm_mock"}, "url": {mock + "/v1/payment_methods"},
			"request[body]":             {"type=card&card%5Bnumber%5D=&card%5Bexp_month%5D=&card%5Bexp_year%5D=&card%5Bcvc%5D=&billing_details%5Bname%5D="},
			"request[headers][0][name]": {"Authorization"}, "request[headers][0][value]": {"Bearer sk_test_123"}}
		for i, r := range replacements {
			f.Set("replacements["+string(rune('0'+i))+"]", r)
		}
		return f
	}

	res := ts.postForm(t, "/v1/forwarding/requests", key, form("card_number", "card_expiry", "card_cvc", "cardholder_name"))
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	var fr stripe.ForwardingRequest
	require.NoError(t, json.Unmarshal(res.body, &fr))
	require.Equal(t, int64(http.StatusOK), fr.ResponseDetails.Status, "stripe-mock accepted the payment method: %s", fr.ResponseDetails.Body)
	assert.Contains(t, fr.ResponseDetails.Body, `"object":"payment_method"`)
	assert.Contains(t, fr.RequestDetails.Body, "card%5Bnumber%5D=424242******4242&card%5Bexp_month%5D=4&card%5Bexp_year%5D=2033&card%5Bcvc%5D=***")
	for _, h := range fr.RequestDetails.Headers {
		if h.Name == "Authorization" {
			assert.Equal(t, "[REDACTED]", h.Value, "the destination's key is not kept")
		}
	}

	res = ts.postForm(t, "/v1/forwarding/requests", key, form("card_number"))
	require.Equal(t, http.StatusOK, res.status, "any answer of the destination is a 200")
	require.NoError(t, json.Unmarshal(res.body, &fr))
	assert.Equal(t, int64(http.StatusBadRequest), fr.ResponseDetails.Status, "without an expiry stripe-mock refuses it")
}

// adyenPayment is Adyen Checkout's /payments request, as Stripe's guide shows it.
type adyenPayment struct {
	Amount struct {
		Value    int    `json:"value"`
		Currency string `json:"currency"`
	} `json:"amount"`
	PaymentMethod struct {
		Type        string `json:"type"`
		Number      string `json:"number"`
		ExpiryMonth string `json:"expiryMonth"`
		ExpiryYear  string `json:"expiryYear"`
		CVC         string `json:"cvc"`
		HolderName  string `json:"holderName"`
	} `json:"paymentMethod"`
	Reference string `json:"reference"`
}

// adyen is an Adyen-shaped destination: it decodes the payment with
// encoding/json, checks every field, and refuses reference "decline" with 402.
func adyen(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p adyenPayment
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		ok := dec.Decode(&p) == nil && r.Header.Get("X-API-Key") == "adyen_key" &&
			r.Header.Get("Content-Type") == "application/json" && p.Amount.Value == 1000 && p.Amount.Currency == "EUR" &&
			p.PaymentMethod == struct {
				Type        string `json:"type"`
				Number      string `json:"number"`
				ExpiryMonth string `json:"expiryMonth"`
				ExpiryYear  string `json:"expiryYear"`
				CVC         string `json:"cvc"`
				HolderName  string `json:"holderName"`
			}{"scheme", visaNumber, "04", "2033", "123", "John Doe"}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case !ok:
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"errorCode":"validation"}`)
		case p.Reference == "decline":
			w.WriteHeader(http.StatusPaymentRequired)
			_, _ = io.WriteString(w, `{"resultCode":"Refused"}`)
		default:
			_, _ = io.WriteString(w, `{"pspReference":"PSP1","resultCode":"Authorised"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// adyenBody is an Adyen payment with the card left blank, as a JSON forward.
func adyenBody(pm, dest, reference string) string {
	body := `{"amount":{"value":1000,"currency":"EUR"},"paymentMethod":{"type":"scheme","number":"","expiryMonth":"","expiryYear":"","cvc":"","holderName":""},"reference":"` + reference + `"}`
	b, _ := json.Marshal(map[string]any{"payment_method": pm, "url": dest,
		"replacements": []string{"card_number", "card_expiry", "card_cvc", "cardholder_name"},
		"request":      map[string]any{"body": body, "headers": []map[string]string{{"name": "X-API-Key", "value": "adyen_key"}}}})
	return string(b)
}

// TestForwardToAnAdyenShapedDestination: the JSON form of the API, the
// adyen_payments preset, every field as Adyen's guide writes it, and a
// refusal (402) that is still a 200 from the vault.
func TestForwardToAnAdyenShapedDestination(t *testing.T) {
	dest := adyen(t)
	ts := newTestServer(t, forwardingTo(5*time.Second, dest))
	key := ts.key(t)
	for _, bk := range []string{"pm_adyen_1", "pm_adyen_2"} {
		ts.tokenize(t, key, bk)
	}
	ts.addDestination(t, key, `{"url":"`+dest.URL+`/v70/payments","preset":"adyen_payments"}`)

	res := ts.do(t, http.MethodPost, "/v1/forwarding/requests", key, adyenBody("pm_adyen_1", dest.URL+"/v70/payments", "order-1"))
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	var fr stripe.ForwardingRequest
	require.NoError(t, json.Unmarshal(res.body, &fr))
	assert.Equal(t, int64(http.StatusOK), fr.ResponseDetails.Status, "%s", fr.ResponseDetails.Body)
	assert.Contains(t, fr.ResponseDetails.Body, "Authorised")
	assert.Contains(t, fr.RequestDetails.Body, `"expiryMonth":"04","expiryYear":"2033","cvc":"***","holderName":"John Doe"`)

	res = ts.do(t, http.MethodPost, "/v1/forwarding/requests", key, adyenBody("pm_adyen_2", dest.URL+"/v70/payments", "decline"))
	require.Equal(t, http.StatusOK, res.status, "the destination's 402 is a 200 from the vault: %s", res.body)
	require.NoError(t, json.Unmarshal(res.body, &fr))
	assert.Equal(t, int64(http.StatusPaymentRequired), fr.ResponseDetails.Status)
}

// worldpayOrder is the part of a Worldpay XML order the destination checks.
type worldpayOrder struct {
	XMLName      xml.Name `xml:"paymentService"`
	MerchantCode string   `xml:"merchantCode,attr"`
	Card         struct {
		Number string `xml:"cardNumber"`
		Expiry struct {
			Month string `xml:"month,attr"`
			Year  string `xml:"year,attr"`
		} `xml:"expiryDate>date"`
		Holder string `xml:"cardHolderName"`
		CVC    string `xml:"cvc"`
	} `xml:"submit>order>paymentDetails>VISA-SSL"`
}

const worldpayBody = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE paymentService PUBLIC "-//Worldpay//DTD Worldpay PaymentService v1//EN" "http://dtd.worldpay.com/paymentService_v1.dtd">
<paymentService version="1.4" merchantCode="MERCHANT1"><submit><order orderCode="ORDER-1"><description>test</description>` +
	`<amount currencyCode="EUR" exponent="2" value="1000"/><paymentDetails><VISA-SSL><cardNumber></cardNumber>` +
	`<expiryDate><date month="" year=""/></expiryDate><cardHolderName></cardHolderName><cvc></cvc></VISA-SSL></paymentDetails>` +
	`</order></submit></paymentService>`

// TestForwardToAWorldpayXMLShapedDestination: the worldpay_xml preset fills
// an XML order that the destination parses with encoding/xml.
func TestForwardToAWorldpayXMLShapedDestination(t *testing.T) {
	var got worldpayOrder
	var contentType string
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		contentType = r.Header.Get("Content-Type")
		if err := xml.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, "bad xml", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		_, _ = io.WriteString(w, `<?xml version="1.0"?><paymentService><reply><orderStatus orderCode="ORDER-1"><payment><lastEvent>AUTHORISED</lastEvent></payment></orderStatus></reply></paymentService>`)
	}))
	t.Cleanup(dest.Close)
	ts := newTestServer(t, forwardingTo(5*time.Second, dest))
	key := ts.key(t)
	ts.tokenize(t, key, "pm_wp")
	ts.addDestination(t, key, `{"url":"`+dest.URL+`/jsp/merchant/xml/paymentService","preset":"worldpay_xml"}`)

	res := ts.postForm(t, "/v1/forwarding/requests", key, url.Values{"payment_method": {"pm_wp"},
		"url": {dest.URL + "/jsp/merchant/xml/paymentService"}, "request[body]": {worldpayBody},
		"request[headers][0][name]": {"Authorization"}, "request[headers][0][value]": {"Basic d3A6cGFzcw=="},
		"replacements[0]": {"card_number"}, "replacements[1]": {"card_expiry"}, "replacements[2]": {"card_cvc"},
		"replacements[3]": {"cardholder_name"}})
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	var fr stripe.ForwardingRequest
	require.NoError(t, json.Unmarshal(res.body, &fr))
	require.Equal(t, int64(http.StatusOK), fr.ResponseDetails.Status, "%s", fr.ResponseDetails.Body)
	assert.Equal(t, "MERCHANT1", got.MerchantCode)
	assert.Equal(t, visaNumber, got.Card.Number)
	assert.Equal(t, "04", got.Card.Expiry.Month)
	assert.Equal(t, "2033", got.Card.Expiry.Year)
	assert.Equal(t, "John Doe", got.Card.Holder)
	assert.Equal(t, "123", got.Card.CVC)
	assert.Equal(t, "application/xml", contentType)
	assert.Contains(t, fr.RequestDetails.Body, "<cardNumber>424242******4242</cardNumber>")
	assert.Contains(t, fr.RequestDetails.Body, "<cvc>***</cvc>")
	assert.Contains(t, fr.ResponseDetails.Body, "AUTHORISED")
}

// TestTheDestinationsEchoOfTheCardIsRedacted: a destination that echoes the
// number and the CVC in its body and headers has them masked in the answer
// and in the stored record.
func TestTheDestinationsEchoOfTheCardIsRedacted(t *testing.T) {
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo-Card", visaNumber)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"received":`+string(b)+`,"message":"card 4242 4242 4242 4242 with CVC 123 declined","spaced":"4242-4242-4242-4242"}`)
	}))
	t.Cleanup(dest.Close)
	ts := newTestServer(t, forwardingTo(5*time.Second, dest))
	key := ts.key(t)
	ts.tokenize(t, key, "pm_echo")
	ts.addDestination(t, key, `{"url":"`+dest.URL+`/cde-import","preset":"stripe_own_vault"}`)

	res := ts.postForm(t, "/v1/forwarding/requests", key, forwardForm("pm_echo", dest.URL+"/cde-import"))
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	var fr stripe.ForwardingRequest
	require.NoError(t, json.Unmarshal(res.body, &fr))
	stored := ts.do(t, http.MethodGet, "/v1/forwarding/requests/"+fr.ID, key, "")
	require.Equal(t, http.StatusOK, stored.status)
	for _, answer := range [][]byte{res.body, stored.body} {
		for _, leak := range []string{visaNumber, "4242 4242 4242 4242", "4242-4242-4242-4242", `\"123\"`, "CVC 123"} {
			assert.NotContains(t, string(answer), leak)
		}
	}
	assert.Contains(t, fr.ResponseDetails.Body, `"number":"424242******4242"`)
	assert.Contains(t, fr.ResponseDetails.Body, "CVC *** declined")
	for _, h := range fr.ResponseDetails.Headers {
		if h.Name == "X-Echo-Card" {
			assert.Equal(t, "424242******4242", h.Value)
		}
	}
}

// TestOneOutboundRequestPerIdempotencyKey: while a forward with a key runs,
// the same key is refused (409); afterwards it replays the record; the
// destination is reached once.
func TestOneOutboundRequestPerIdempotencyKey(t *testing.T) {
	var hits atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			close(entered)
		}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(dest.Close)
	ts := newTestServer(t, forwardingTo(5*time.Second, dest))
	key := ts.key(t)
	ts.tokenize(t, key, "pm_idem")
	ts.addDestination(t, key, `{"url":"`+dest.URL+`/cde-import","preset":"stripe_own_vault"}`)
	form := forwardForm("pm_idem", dest.URL+"/cde-import")

	first := make(chan response, 1)
	go func() { first <- ts.postForm(t, "/v1/forwarding/requests", key, form, "Idempotency-Key", "order-77") }()
	<-entered
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := ts.postForm(t, "/v1/forwarding/requests", key, form, "Idempotency-Key", "order-77")
			assert.Equal(t, http.StatusConflict, res.status, "%s", res.body)
			assert.Contains(t, string(res.body), "idempotency_key_in_use")
		}()
	}
	wg.Wait()
	close(release)
	res := <-first
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)

	again := ts.postForm(t, "/v1/forwarding/requests", key, form, "Idempotency-Key", "order-77")
	require.Equal(t, http.StatusOK, again.status, "%s", again.body)
	assert.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	assert.Equal(t, res.json(t)["id"], again.json(t)["id"])
	form.Set("metadata[order]", "A-2")
	other := ts.postForm(t, "/v1/forwarding/requests", key, form, "Idempotency-Key", "order-77")
	assert.Equal(t, http.StatusBadRequest, other.status, "the key with another request: %s", other.body)
	assert.Equal(t, int64(1), hits.Load(), "one outbound request for the key")
}

// TestForwardFailuresAnswerStripesCodes: off the allow-list, another
// tenant's token, a missing scope, a destination too slow, one that only
// speaks TLS 1.1, and a redirect that is not followed.
func TestForwardFailuresAnswerStripesCodes(t *testing.T) {
	done := make(chan struct{})
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the vault hanging up
		select {                           // answers only once the vault has given up (or the test ends)
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(done) })
	var redirectedTo atomic.Int64
	target := httptest.NewTLSServer(counted(http.NotFoundHandler(), &redirectedTo))
	t.Cleanup(target.Close)
	redirect := httptest.NewTLSServer(http.RedirectHandler(target.URL+"/elsewhere", http.StatusFound))
	t.Cleanup(redirect.Close)
	var handshake lockedBuffer
	old := httptest.NewUnstartedServer(http.NotFoundHandler())
	old.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	old.Config.ErrorLog = log.New(&handshake, "", 0)
	old.StartTLS()
	t.Cleanup(old.Close)
	ts := newTestServer(t, forwardingTo(5*time.Second, slow, target, redirect, old))
	tenant, key := vaulttest.Tenant(t, ts.svc)
	ts.tokenize(t, key, "pm_fail")
	for _, d := range []string{slow.URL + `/cde-import","timeout_ms":300`, redirect.URL + `/cde-import"`, old.URL + `/cde-import"`} {
		ts.addDestination(t, key, `{"preset":"stripe_own_vault","url":"`+d+`}`)
	}
	otherKey := ts.key(t)
	ts.tokenize(t, otherKey, "pm_foreign")
	revealOnly, _, err := ts.svc.CreateAPIKey(context.Background(), tenant, []vault.Scope{vault.ScopeTokensReveal,
		vault.ScopeTokensRead, vault.ScopeForwardingRead}, "no tokens:forward")
	require.NoError(t, err)

	for _, tc := range []struct {
		name, key, pm, dest string
		status              int
		code, param         string
	}{
		{"url off the allow-list", key, "pm_fail", target.URL + "/cde-import", http.StatusBadRequest, "forwarding_api_invalid_parameter", "url"},
		{"another tenant's token", key, "pm_foreign", slow.URL + "/cde-import", http.StatusNotFound, "resource_missing", "payment_method"},
		{"no tokens:forward scope", revealOnly, "pm_fail", slow.URL + "/cde-import", http.StatusForbidden, "missing_scope", ""},
		{"slow destination", key, "pm_fail", slow.URL + "/cde-import", http.StatusGatewayTimeout, "forwarding_api_upstream_connection_timeout", ""},
		{"TLS 1.1 only", key, "pm_fail", old.URL + "/cde-import", http.StatusBadGateway, "forwarding_api_upstream_connection_error", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.clock.Advance(time.Second) // records list newest first
			res := ts.postForm(t, "/v1/forwarding/requests", tc.key, forwardForm(tc.pm, tc.dest))
			require.Equal(t, tc.status, res.status, "%s", res.body)
			e := res.json(t)["error"].(map[string]any)
			assert.Equal(t, tc.code, e["code"])
			if tc.param != "" {
				assert.Equal(t, tc.param, e["param"])
			}
			assert.NotContains(t, string(res.body), "127.0.0.1", "no internal detail")
		})
	}
	assert.Contains(t, handshake.String(), "version", "the TLS 1.1 destination saw a TLS 1.2+ client")

	ts.clock.Advance(time.Second)
	res := ts.postForm(t, "/v1/forwarding/requests", key, forwardForm("pm_fail", redirect.URL+"/cde-import"))
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	assert.Equal(t, float64(http.StatusFound), res.json(t)["response_details"].(map[string]any)["status"])
	assert.Zero(t, redirectedTo.Load(), "the redirect was not followed")

	list := ts.do(t, http.MethodGet, "/v1/forwarding/requests?limit=10", revealOnly, "")
	require.Equal(t, http.StatusOK, list.status, "forwarding:read lists: %s", list.body)
	var page struct {
		Data []struct {
			Status      string  `json:"status"`
			FailureCode *string `json:"failure_code"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(list.body, &page))
	require.Len(t, page.Data, 3, "the timeout, the TLS failure and the redirect are recorded")
	assert.Equal(t, "succeeded", page.Data[0].Status)
	assert.Equal(t, "forwarding_api_upstream_connection_error", *page.Data[1].FailureCode)
	assert.Equal(t, "forwarding_api_upstream_connection_timeout", *page.Data[2].FailureCode)
	assert.Equal(t, http.StatusForbidden, ts.do(t, http.MethodPost, "/forwarding/destinations", revealOnly,
		`{"preset":"stripe_own_vault","url":"https://vault.example.com/cde-import"}`).status, "forwarding:manage is needed")
}

// selfSignedClientCert returns a self-signed client certificate and its
// private key, both PEM, and the certificate's NotAfter.
func selfSignedClientCert(t *testing.T) (certPEM, keyPEM string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	notAfter = time.Now().Add(24 * time.Hour).Truncate(time.Second).UTC()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "merchant-at-psp"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), notAfter
}

// TestADestinationShowsItsSettingsButNeverItsSecrets: a custom destination
// with every setting (a field map in its three spellings, a secret header,
// a timeout, a signature rule with its key, an mTLS client certificate)
// answers its settings with each field map entry as a list and only whether
// it holds secrets; reading and listing it answer the same. No connection
// is made: the destination is only registered.
func TestADestinationShowsItsSettingsButNeverItsSecrets(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	certPEM, keyPEM, notAfter := selfSignedClientCert(t)
	const signingKey = "whsec-like-signing-key-for-the-psp"
	body, err := json.Marshal(map[string]any{
		"url": "https://psp.example.com/v1/charges/*", "format": "json",
		"fields": map[string]any{"card_number": "card.pan",
			"card_expiry":       map[string]string{"path": "card.expiry", "expiry": "MM/YY"},
			"card_cvc":          []any{"card.cvc"},
			"request_signature": []any{map[string]string{"path": "signature"}}},
		"secret_headers": []string{"X-Psp-Key"}, "timeout_ms": 10000,
		"signature":          map[string]string{"encoding": "hex", "secret": signingKey},
		"client_certificate": map[string]string{"certificate": certPEM, "private_key": keyPEM}})
	require.NoError(t, err)

	created := ts.do(t, http.MethodPost, "/forwarding/destinations", key, string(body))
	require.Equal(t, http.StatusCreated, created.status, "%s", created.body)
	d := created.json(t)
	assert.JSONEq(t, `{"card_number":[{"path":"card.pan"}],"card_expiry":[{"path":"card.expiry","expiry":"MM/YY"}],
		"card_cvc":[{"path":"card.cvc"}],"request_signature":[{"path":"signature"}]}`, jsonOf(t, d["fields"]))
	assert.Nil(t, d["preset"])
	assert.Equal(t, map[string]any{"encoding": "hex"}, d["signature"], "the rule without its key")
	assert.Equal(t, true, d["signature_key"])
	assert.Equal(t, map[string]any{"expires_at": notAfter.Format(time.RFC3339)}, d["client_certificate"])
	assert.Equal(t, float64(10000), d["timeout_ms"])
	for _, secret := range []string{signingKey, "PRIVATE KEY", "CERTIFICATE"} {
		assert.NotContains(t, string(created.body), secret)
	}

	read := ts.do(t, http.MethodGet, "/forwarding/destinations/"+d["id"].(string), key, "")
	require.Equal(t, http.StatusOK, read.status, "%s", read.body)
	assert.JSONEq(t, string(created.body), string(read.body))
	list := ts.do(t, http.MethodGet, "/forwarding/destinations", key, "")
	require.Equal(t, http.StatusOK, list.status, "%s", list.body)
	assert.JSONEq(t, `{"object":"list","has_more":false,"data":[`+string(created.body)+`]}`, string(list.body))
}

// jsonOf returns v as JSON.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
