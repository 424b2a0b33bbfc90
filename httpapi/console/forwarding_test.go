package console_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// visaNumber is the public Visa test card the forwards here send.
const visaNumber = "4242424242424242"

// destinationSecret is the value of the destination's secret header.
const destinationSecret = "dest_key_s3cr3t_value"

// forwardingWorld is a world whose vault forwards to a loopback TLS
// destination that echoes the card back; it returns the destination's URL.
func forwardingWorld(t *testing.T) (*world, string) {
	t.Helper()
	dest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Key", r.Header.Get("X-API-Key"))
		_, _ = io.WriteString(w, `{"id":"tok_remote","received":`+string(b)+`}`)
	}))
	t.Cleanup(dest.Close)
	w := newWorldOf(t, vaulttest.Options{Egress: vaulttest.LoopbackEgress(5*time.Second, dest), AllowLoopback: true})
	return w, dest.URL + "/cde-import"
}

// api sends an API request with key and returns the status and body.
func (w *world) api(method, path, key, contentType, body string) (int, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.srv.URL+path, strings.NewReader(body))
	require.NoError(w.t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := w.srv.Client().Do(req)
	require.NoError(w.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(w.t, err)
	return res.StatusCode, string(raw)
}

// forwardThroughAPI allow-lists destURL with the stripe_own_vault preset
// and forwards the Visa test card to it with the secret header, both
// through the API; it returns the destination's and the forward's ids.
func (w *world) forwardThroughAPI(destURL string) (string, string) {
	w.t.Helper()
	w.tokenize("pm_console_fwd", visaNumber)
	status, body := w.api(http.MethodPost, "/forwarding/destinations", w.key, "application/json",
		`{"url":"`+destURL+`","preset":"stripe_own_vault"}`)
	require.Equal(w.t, http.StatusCreated, status, body)
	var dest struct{ ID string }
	require.NoError(w.t, json.Unmarshal([]byte(body), &dest))
	form := url.Values{"payment_method": {"pm_console_fwd"}, "url": {destURL},
		"request[body]":             {`{"metadata":{},"card":{"number":"","exp_month":"","exp_year":"","cvc":"","name":""}}`},
		"request[headers][0][name]": {"X-API-Key"}, "request[headers][0][value]": {destinationSecret},
		"replacements[0]": {"card_number"}, "replacements[1]": {"card_expiry"},
		"replacements[2]": {"card_cvc"}, "replacements[3]": {"cardholder_name"}}
	status, body = w.api(http.MethodPost, "/v1/forwarding/requests", w.key, "application/x-www-form-urlencoded", form.Encode())
	require.Equal(w.t, http.StatusOK, status, body)
	var fr struct{ ID string }
	require.NoError(w.t, json.Unmarshal([]byte(body), &fr))
	return dest.ID, fr.ID
}

func TestForwardingViewListsDestinationsAndRedactedForwards(t *testing.T) {
	w, destURL := forwardingWorld(t)
	destID, fwdID := w.forwardThroughAPI(destURL)
	b := w.browser()
	b.signIn(w.keyWith(vault.ScopeForwardingRead))
	ov := b.get("/console/")
	assert.Contains(t, ov.body, `data-nav="forwarding"`)

	p := b.get("/console/forwarding")
	require.Equal(t, http.StatusOK, p.status, p.body)
	for _, want := range []string{destID, destURL, "stripe_own_vault", ">json<", fwdID, "succeeded", ">200<",
		`class="chart latency-chart"`, destID + ": "} {
		assert.Contains(t, p.body, want)
	}
	assert.Regexp(t, `<td class="num">\d+\.\d ms</td>`, p.body, "the forward's duration")
	assert.NotContains(t, p.body, destinationSecret, "no secret header value")
	assertNoCardNumber(t, stripTags(p.body))
	for _, leak := range []string{visaNumber, "424242", "tok_remote", `"cvc"`} {
		assert.NotContains(t, p.body, leak, "no card data nor bodies")
	}
}

// stripTags returns the text of an HTML page without its tags.
// assertNoCardNumber fails unless text holds no standalone run of 13–19
// digits that passes the Luhn check: a card number rendered anywhere. Ids
// are hex, so a digit run inside one is not taken for a card number.
func assertNoCardNumber(t *testing.T, text string) {
	t.Helper()
	for _, run := range regexp.MustCompile(`\b\d{13,19}\b`).FindAllString(text, -1) {
		assert.False(t, card.ContainsPAN(run), "a card number on the page: %s…", run[:6])
	}
}

func stripTags(html string) string {
	return regexp.MustCompile(`<[^>]*>`).ReplaceAllString(html, " ")
}

func TestForwardingViewNeedsForwardingRead(t *testing.T) {
	tests := []struct {
		name   string
		scopes []vault.Scope
		status int
	}{
		{"forwarding:read", []vault.Scope{vault.ScopeForwardingRead}, http.StatusOK},
		{"tokens:forward implies it", []vault.Scope{vault.ScopeTokensForward}, http.StatusOK},
		{"forwarding:manage implies it", []vault.Scope{vault.ScopeForwardingManage}, http.StatusOK},
		{"tokens:read and audit:read do not", []vault.Scope{vault.ScopeTokensRead, vault.ScopeAuditRead}, http.StatusForbidden},
	}
	w := newWorld(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := w.browser()
			b.signIn(w.keyWith(tt.scopes...))
			assert.Equal(t, tt.status == http.StatusOK, strings.Contains(b.get("/console/").body, `data-nav="forwarding"`), "nav entry")
			assert.Equal(t, tt.status, b.get("/console/forwarding").status)
		})
	}
}
