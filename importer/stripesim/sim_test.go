package stripesim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
)

// TestPaginationWalksEverythingOnce walks customers and each customer's
// payment methods through stripe-go with several page sizes, through both
// list endpoints, and checks that every customer and card payment method
// comes back exactly once and Link payment methods only when asked for.
func TestPaginationWalksEverythingOnce(t *testing.T) {
	sim, _, sc := startSim(t, Config{}, testSpec)
	cards, links := cardPMs(t, sim)
	byID := make(map[string]PaymentMethod)
	for _, pm := range sim.PaymentMethods() {
		byID[pm.ID] = pm
	}
	ctx := context.Background()

	tests := []struct {
		name     string
		limit    int64
		customer bool // GET /v1/customers/{id}/payment_methods instead of /v1/payment_methods?customer=
	}{
		{"limit 1 payment_methods", 1, false},
		{"default limit customer payment_methods", 0, true},
		{"limit 3 customer payment_methods", 3, true},
		{"limit 100 payment_methods", 100, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list := stripe.ListParams{}
			if tc.limit > 0 {
				list.Limit = stripe.Int64(tc.limit)
			}
			var customers []string
			for c, err := range sc.V1Customers.List(ctx, &stripe.CustomerListParams{ListParams: list}).All(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				customers = append(customers, c.ID)
			}
			if !slices.Equal(customers, sim.Customers()) {
				t.Fatalf("walked %d customers; want the %d in Stripe's order", len(customers), len(sim.Customers()))
			}
			seen := map[string]int{}
			for _, cus := range customers {
				for _, typ := range []string{"card", "link", ""} {
					for _, pm := range listPMs(t, sc, tc.customer, cus, typ, list) {
						want := byID[pm.ID]
						if pm.Customer == nil || pm.Customer.ID != cus || want.Customer != cus {
							t.Fatalf("%s listed under %s belongs to %q", pm.ID, cus, want.Customer)
						}
						if typ != "" && string(pm.Type) != typ {
							t.Fatalf("type=%s listed %s of type %s", typ, pm.ID, pm.Type)
						}
						if pm.Type == "card" && (pm.Card == nil || pm.Card.Last4 != want.Last4 || int(pm.Card.ExpYear) != want.ExpYear || string(pm.Card.Brand) != want.Brand) {
							t.Fatalf("%s card fields differ from the seed", pm.ID)
						}
						seen[typ+"/"+pm.ID]++
					}
				}
			}
			for _, pm := range cards {
				if seen["card/"+pm.ID] != 1 || seen["/"+pm.ID] != 1 || seen["link/"+pm.ID] != 0 {
					t.Fatalf("card %s seen %d times with type=card, %d untyped, %d with type=link; want 1, 1, 0",
						pm.ID, seen["card/"+pm.ID], seen["/"+pm.ID], seen["link/"+pm.ID])
				}
			}
			for _, pm := range links {
				if seen["link/"+pm.ID] != 1 || seen["/"+pm.ID] != 1 || seen["card/"+pm.ID] != 0 {
					t.Fatalf("link %s seen %d times with type=link, %d untyped, %d with type=card; want 1, 1, 0",
						pm.ID, seen["link/"+pm.ID], seen["/"+pm.ID], seen["card/"+pm.ID])
				}
			}
			if len(seen) != 2*len(cards)+2*len(links) {
				t.Fatalf("saw %d listings; want %d", len(seen), 2*len(cards)+2*len(links))
			}
		})
	}
}

// listPMs lists one customer's payment methods of type typ ("" for all).
func listPMs(t *testing.T, sc *stripe.Client, viaCustomer bool, cus, typ string, list stripe.ListParams) []*stripe.PaymentMethod {
	t.Helper()
	ctx := context.Background()
	var typeParam *string
	if typ != "" {
		typeParam = stripe.String(typ)
	}
	var out []*stripe.PaymentMethod
	collect := func(pm *stripe.PaymentMethod, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pm)
	}
	if viaCustomer {
		for pm, err := range sc.V1Customers.ListPaymentMethods(ctx, &stripe.CustomerListPaymentMethodsParams{
			ListParams: list, Customer: stripe.String(cus), Type: typeParam}).All(ctx) {
			collect(pm, err)
		}
		return out
	}
	for pm, err := range sc.V1PaymentMethods.List(ctx, &stripe.PaymentMethodListParams{
		ListParams: list, Customer: stripe.String(cus), Type: typeParam}).All(ctx) {
		collect(pm, err)
	}
	return out
}

// TestPaginationBackwardAndErrors covers ending_before and bad list
// parameters.
func TestPaginationBackwardAndErrors(t *testing.T) {
	sim, _, sc := startSim(t, Config{}, testSpec)
	ctx := context.Background()
	all := sim.Customers()

	var back []string
	for c, err := range sc.V1Customers.List(ctx, &stripe.CustomerListParams{ListParams: stripe.ListParams{
		Limit: stripe.Int64(4), EndingBefore: stripe.String(all[len(all)-1])}}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, c.ID)
	}
	want := slices.Clone(all[:len(all)-1])
	slices.Reverse(want)
	if !slices.Equal(back, want) {
		t.Fatalf("ending_before walked %d customers %v; want the %d before the last, newest last", len(back), back, len(want))
	}

	tests := []struct {
		name   string
		params *stripe.CustomerListParams
		status int
		code   string
	}{
		{"limit over 100", &stripe.CustomerListParams{ListParams: stripe.ListParams{Limit: stripe.Int64(101)}}, 400, "parameter_invalid_integer"},
		{"unknown cursor", &stripe.CustomerListParams{ListParams: stripe.ListParams{StartingAfter: stripe.String("cus_unknown")}}, 404, "resource_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := sc.V1Customers.List(ctx, tc.params)
			wantStripeError(t, l.Err(), tc.status, tc.code)
		})
	}
	_, err := sc.V1Customers.Retrieve(ctx, "cus_missing", nil)
	wantStripeError(t, err, 404, "resource_missing")
	for pm, err := range sc.V1PaymentMethods.List(ctx, &stripe.PaymentMethodListParams{Customer: stripe.String("cus_missing")}).All(ctx) {
		if pm != nil {
			t.Fatalf("unknown customer listed %s", pm.ID)
		}
		wantStripeError(t, err, 404, "resource_missing")
	}
}

// TestSeedIsDeterministic checks ids, owners and cards depend only on the
// spec, and that cards are distinct, Luhn-valid, on test BINs and unexpired.
func TestSeedIsDeterministic(t *testing.T) {
	spec := SeedSpec{Customers: 50, PaymentMethods: 600, LinkEvery: 25, Seed: 7}
	a, b, other := New(Config{}), New(Config{}), New(Config{})
	a.Seed(spec)
	b.Seed(spec)
	other.Seed(SeedSpec{Customers: 50, PaymentMethods: 600, LinkEvery: 25, Seed: 8})
	if !slices.Equal(a.PaymentMethods(), b.PaymentMethods()) || !slices.Equal(a.Customers(), b.Customers()) {
		t.Fatal("the same seed gave different accounts")
	}
	if slices.Equal(a.Customers(), other.Customers()) {
		t.Fatal("another seed gave the same customers")
	}
	numbers := map[string]bool{}
	now := time.Now()
	links := 0
	for i, pm := range a.PaymentMethods() {
		if (i+1)%spec.LinkEvery == 0 {
			if pm.Type != "link" {
				t.Fatalf("payment method %d has type %s; want link", i+1, pm.Type)
			}
			if _, ok := a.Card(pm.ID); ok {
				t.Fatalf("link %s has a card", pm.ID)
			}
			links++
			continue
		}
		c, ok := a.Card(pm.ID)
		cb, _ := b.Card(pm.ID)
		switch {
		case !ok || c != cb:
			t.Fatalf("%s: card missing or differs between equal seeds", pm.ID)
		case numbers[c.Number]:
			t.Fatalf("%s: card number repeated (%s)", pm.ID, c)
		case !luhnValid(c.Number):
			t.Fatalf("%s: %s fails Luhn", pm.ID, c)
		case !slices.ContainsFunc(brands, func(b brand) bool {
			return b.name == pm.Brand && strings.HasPrefix(c.Number, b.prefix) && len(c.Number) == b.length && len(c.CVC) == b.cvcLen
		}):
			t.Fatalf("%s: %s brand %s is not on its test BIN", pm.ID, c, pm.Brand)
		case c.ExpYear <= now.Year() || c.ExpMonth < 1 || c.ExpMonth > 12:
			t.Fatalf("%s: expiry %02d/%d is not in the future", pm.ID, c.ExpMonth, c.ExpYear)
		case pm.IIN != c.Number[:6] || pm.Last4 != c.Number[len(c.Number)-4:] || c.Name != pm.Name || c.Name == "":
			t.Fatalf("%s: snapshot does not match its card", pm.ID)
		}
		numbers[c.Number] = true
	}
	if links != spec.PaymentMethods/spec.LinkEvery {
		t.Fatalf("%d Link payment methods; want %d", links, spec.PaymentMethods/spec.LinkEvery)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", a.mustCard(t), a.mustCard(t), a.mustCard(t), a.mustCard(t)); strings.Contains(s, a.mustCard(t).Number) {
		t.Fatalf("formatting a Card shows its number: %s", s)
	}
}

// mustCard returns the first card of the simulator.
func (s *Sim) mustCard(t *testing.T) Card {
	t.Helper()
	for _, pm := range s.PaymentMethods() {
		if c, ok := s.Card(pm.ID); ok {
			return c
		}
	}
	t.Fatal("no card")
	return Card{}
}

// TestAPIKey checks that only configured keys are accepted, with Stripe's
// 401 error otherwise, on the calls the importer uses to check a key.
func TestAPIKey(t *testing.T) {
	sim, url, _ := startSim(t, Config{APIKeys: []string{testKey, "sk_test_second"}}, testSpec)
	ctx := context.Background()
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"configured key", testKey, true},
		{"second key", "sk_test_second", true},
		{"unknown key", "sk_test_unknown0000", false},
		{"live key of another account", "sk_live_" + strings.Repeat("x", 24), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := newStripe(t, url, tc.key)
			acct, err := sc.V1Accounts.Retrieve(ctx, nil)
			bal, berr := sc.V1Balance.Retrieve(ctx, nil)
			_, cerr := sc.V1Customers.Retrieve(ctx, sim.Customers()[0], nil)
			if tc.ok {
				if err != nil || berr != nil || cerr != nil || acct.ID == "" || bal.Object != "balance" {
					t.Fatalf("account %v, balance %v, customer %v", err, berr, cerr)
				}
				return
			}
			for _, e := range []error{err, berr, cerr} {
				se := wantStripeError(t, e, http.StatusUnauthorized, "api_key_invalid")
				if se.Type != "authentication_error" || strings.Contains(se.Msg, tc.key) {
					t.Fatalf("401 error type %s message %q; want authentication_error without the key", se.Type, se.Msg)
				}
			}
		})
	}
	resp, err := http.Get(url + "/v1/customers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: status %d; want 401", resp.StatusCode)
	}
	if st := sim.Stats(); st.Unauthorized != 7 {
		t.Fatalf("Stats.Unauthorized = %d; want 7", st.Unauthorized)
	}
}

// TestNoFullCardNumberInAnswers reads every list and retrieve answer raw
// and checks no card number appears in it.
func TestNoFullCardNumberInAnswers(t *testing.T) {
	sim, url, _ := startSim(t, Config{}, testSpec)
	cards, _ := cardPMs(t, sim)
	paths := []string{"/v1/customers?limit=100", "/v1/payment_methods?limit=100", "/v1/payment_methods?limit=100&starting_after=" + sim.PaymentMethods()[99].ID}
	for _, pm := range cards[:20] {
		paths = append(paths, "/v1/payment_methods/"+pm.ID, "/v1/customers/"+pm.Customer+"/payment_methods?limit=100",
			"/v1/customers/"+pm.Customer+"/payment_methods/"+pm.ID)
	}
	var all strings.Builder
	for _, p := range paths {
		req, _ := http.NewRequest(http.MethodGet, url+p, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, b)
		}
		all.Write(b)
	}
	for _, pm := range cards {
		c, _ := sim.Card(pm.ID)
		if strings.Contains(all.String(), c.Number) {
			t.Fatalf("an answer holds the full number of %s", pm.ID)
		}
	}
	if strings.Contains(all.String(), `"number"`) || strings.Contains(all.String(), `"cvc"`) {
		t.Fatal("an answer has a number or cvc field")
	}
}

// TestForward forwards through stripe-go to a real destination and checks
// what the destination received and what the forwarding request reports.
func TestForward(t *testing.T) {
	tests := []struct {
		name         string
		replacements []string
		status       int
		body         string
		wantCVC      bool
		wantName     bool
		wantExpiry   bool
	}{
		{"all replacements, created", allReplacements, 201, `{"id":"tok_1","masked_account_number":"x","echo":"{{number}}"}`, true, true, true},
		{"number and expiry only", []string{"card_number", "card_expiry"}, 200, `{"id":"tok_2"}`, false, false, true},
		{"destination rejects: still 200 with its status", allReplacements, 422, `{"error":{"code":"invalid_expiry_year"}}`, true, true, true},
		{"destination fails: still 200 with its status", []string{"card_number", "card_cvc"}, 500, `oops`, true, false, false},
		{"destination redirects: reported, not followed", []string{"card_number"}, 307, `moved`, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, _, sc := startSim(t, Config{}, testSpec)
			cards, _ := cardPMs(t, sim)
			pm := cards[3]
			card, _ := sim.Card(pm.ID)
			dest := newDestination(t, tc.status, tc.body)

			fr, err := sc.V1ForwardingRequests.Create(context.Background(), fwdParams(t, pm.ID, dest.URL, tc.replacements...))
			if err != nil {
				t.Fatal(err)
			}
			got := dest.requests()
			if len(got) != 1 {
				t.Fatalf("destination got %d requests; want 1", len(got))
			}
			h, b := got[0].header, got[0].body
			if h.Get("User-Agent") != "Stripe" || h.Get("Content-Type") != "application/json" ||
				h.Get("X-API-Key") != "cvk_test_destination_key" || h.Get("X-Trace") != "trace-1" {
				t.Fatalf("destination headers %v", h)
			}
			if b.Metadata["business_key"] != pm.ID || b.Card.Number != card.Number {
				t.Fatal("destination body lacks the business key or the card number")
			}
			wantStr := func(field, got, want string, filled bool) {
				t.Helper()
				if !filled {
					want = ""
				}
				if got != want {
					t.Fatalf("card.%s = %q; want %q", field, got, want)
				}
			}
			wantStr("exp_month", b.Card.ExpMonth, fmt.Sprintf("%02d", card.ExpMonth), tc.wantExpiry)
			wantStr("exp_year", b.Card.ExpYear, fmt.Sprint(card.ExpYear), tc.wantExpiry)
			wantStr("cvc", b.Card.CVC, card.CVC, tc.wantCVC)
			wantStr("name", b.Card.Name, card.Name, tc.wantName)

			if fr.Object != "forwarding.request" || !strings.HasPrefix(fr.ID, "fwdreq_") || fr.PaymentMethod != pm.ID || fr.URL != dest.URL {
				t.Fatalf("forwarding request %+v", fr)
			}
			if len(fr.Replacements) != len(tc.replacements) {
				t.Fatalf("replacements %v; want %v", fr.Replacements, tc.replacements)
			}
			rd := fr.ResponseDetails
			if rd == nil || rd.Status != int64(tc.status) || rd.Body != strings.ReplaceAll(tc.body, "{{number}}", card.Masked()) {
				t.Fatalf("response_details %+v; want status %d and the body with the number masked", rd, tc.status)
			}
			var reported forwarded
			if err := json.Unmarshal([]byte(fr.RequestDetails.Body), &reported); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(fr.RequestDetails.Body, card.Number) || reported.Card.Number != card.Masked() {
				t.Fatalf("request_details.body shows number %q; want %q", reported.Card.Number, card.Masked())
			}
			wantStr("cvc (reported)", reported.Card.CVC, "***", tc.wantCVC)
			if fr.RequestDetails.HTTPMethod != "POST" || fr.RequestContext == nil || fr.RequestContext.DestinationIPAddress != "127.0.0.1" {
				t.Fatalf("request details %+v, context %+v", fr.RequestDetails, fr.RequestContext)
			}
			for _, hd := range append(fr.RequestDetails.Headers, toReqHeaders(rd.Headers)...) {
				if strings.Contains(strings.ToLower(hd.Name), "key") && hd.Value != "[REDACTED]" {
					t.Fatalf("header %s shown as %q; want [REDACTED]", hd.Name, hd.Value)
				}
			}
			again, err := sc.V1ForwardingRequests.Retrieve(context.Background(), fr.ID, nil)
			if err != nil || again.ID != fr.ID || again.ResponseDetails.Status != rd.Status {
				t.Fatalf("retrieve: %v", err)
			}
			if st := sim.Stats(); st.Forwards != 1 || st.ForwardsByPM[pm.ID] != 1 {
				t.Fatalf("stats %+v; want one forward of %s", st, pm.ID)
			}
		})
	}
}

func toReqHeaders(in []*stripe.ForwardingRequestResponseDetailsHeader) []*stripe.ForwardingRequestRequestDetailsHeader {
	out := make([]*stripe.ForwardingRequestRequestDetailsHeader, len(in))
	for i, h := range in {
		out[i] = &stripe.ForwardingRequestRequestDetailsHeader{Name: h.Name, Value: h.Value}
	}
	return out
}

// TestForwardRejects checks the invalid forwarding requests Stripe refuses
// never reach the destination.
func TestForwardRejects(t *testing.T) {
	dest := newDestination(t, 201, `{}`)
	sim, _, sc := startSim(t, Config{AllowedDestinations: []string{dest.URL}}, testSpec)
	cards, links := cardPMs(t, sim)
	pm := cards[0].ID
	closed := closedURL(t)

	tests := []struct {
		name   string
		edit   func(p *stripe.ForwardingRequestCreateParams)
		status int
		code   string
	}{
		{"missing payment_method", func(p *stripe.ForwardingRequestCreateParams) { p.PaymentMethod = nil }, 400, "parameter_missing"},
		{"unknown payment_method", func(p *stripe.ForwardingRequestCreateParams) { p.PaymentMethod = stripe.String("pm_unknown") }, 404, "resource_missing"},
		{"link payment method", func(p *stripe.ForwardingRequestCreateParams) { p.PaymentMethod = stripe.String(links[0].ID) }, 400, ""},
		{"missing url", func(p *stripe.ForwardingRequestCreateParams) { p.URL = nil }, 400, "parameter_missing"},
		{"missing body", func(p *stripe.ForwardingRequestCreateParams) { p.Request.Body = nil }, 400, "parameter_missing"},
		{"no replacements", func(p *stripe.ForwardingRequestCreateParams) { p.Replacements = nil }, 400, "parameter_missing"},
		{"unsupported replacement", func(p *stripe.ForwardingRequestCreateParams) {
			p.Replacements = stripe.StringSlice([]string{"card_number", "request_signature"})
		}, 400, ""},
		{"plain http off loopback", func(p *stripe.ForwardingRequestCreateParams) {
			p.URL = stripe.String("http://vault.example.com/cde-import")
		}, 400, "url_invalid"},
		{"not an allowed destination", func(p *stripe.ForwardingRequestCreateParams) {
			p.URL = stripe.String(strings.TrimSuffix(dest.URL, "/cde-import") + "/other")
		}, 400, "url_invalid"},
		{"body not JSON", func(p *stripe.ForwardingRequestCreateParams) { p.Request.Body = stripe.String("<xml/>") }, 400, ""},
		{"bad header name", func(p *stripe.ForwardingRequestCreateParams) { p.Request.Headers[0].Name = stripe.String("X Bad") }, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := fwdParams(t, pm, dest.URL, allReplacements...)
			tc.edit(p)
			_, err := sc.V1ForwardingRequests.Create(context.Background(), p)
			wantStripeError(t, err, tc.status, tc.code)
		})
	}
	if n := len(dest.requests()); n != 0 {
		t.Fatalf("destination got %d requests; want none", n)
	}

	t.Run("unreachable destination", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		_, err := sc.V1ForwardingRequests.Create(context.Background(), fwdParams(t, cards[0].ID, closed, allReplacements...))
		se := wantStripeError(t, err, http.StatusBadGateway, "forwarding_destination_unreachable")
		if se.LastResponse.Header.Get("Stripe-Should-Retry") != "false" {
			t.Fatal("unreachable answer lacks Stripe-Should-Retry: false")
		}
		if st := sim.Stats(); st.DestinationErrors != 1 || st.Forwards != 1 {
			t.Fatalf("stats %+v; want one failed forward", st)
		}
	})
}

// closedURL returns an http URL on loopback where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/cde-import"
	ln.Close()
	return url
}

// TestIdempotency checks Stripe's Idempotency-Key semantics on forwards.
func TestIdempotency(t *testing.T) {
	ctx := context.Background()
	t.Run("replay does not forward twice", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		dest := newDestination(t, 201, `{"id":"tok"}`)
		p := fwdParams(t, cards[0].ID, dest.URL, allReplacements...)
		p.SetIdempotencyKey("fwd-key-1")
		first, err := sc.V1ForwardingRequests.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		second, err := sc.V1ForwardingRequests.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if first.ID != second.ID || second.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay answered %s (replayed %q); want %s", second.ID, second.LastResponse.Header.Get("Idempotent-Replayed"), first.ID)
		}
		other := fwdParams(t, cards[1].ID, dest.URL, allReplacements...)
		other.SetIdempotencyKey("fwd-key-1")
		_, err = sc.V1ForwardingRequests.Create(ctx, other)
		if se := wantStripeError(t, err, 400, ""); se.Type != "idempotency_error" {
			t.Fatalf("reused key with other params: type %s; want idempotency_error", se.Type)
		}
		if n := len(dest.requests()); n != 1 {
			t.Fatalf("destination got %d requests; want 1", n)
		}
		if st := sim.Stats(); st.IdempotentReplays != 1 || st.Forwards != 1 {
			t.Fatalf("stats %+v; want 1 replay, 1 forward", st)
		}
	})
	t.Run("a 500 is replayed under its key; a fresh key succeeds", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		dest := newDestination(t, 201, `{}`)
		p := fwdParams(t, cards[0].ID, dest.URL, allReplacements...)
		p.SetIdempotencyKey("fwd-key-500")
		sim.SetFaults(Faults{ServerErrorEvery: 1})
		_, err := sc.V1ForwardingRequests.Create(ctx, p)
		wantStripeError(t, err, 500, "")
		sim.SetFaults(Faults{})
		_, err = sc.V1ForwardingRequests.Create(ctx, p)
		se := wantStripeError(t, err, 500, "")
		if se.LastResponse.Header.Get("Stripe-Should-Retry") != "false" {
			t.Fatal("injected 500 on a POST lacks Stripe-Should-Retry: false")
		}
		p.SetIdempotencyKey("fwd-key-500-retry")
		if _, err := sc.V1ForwardingRequests.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if n := len(dest.requests()); n != 1 {
			t.Fatalf("destination got %d requests; want 1", n)
		}
	})
	t.Run("a key in flight answers 409", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		dest := newDestination(t, 201, `{}`)
		dest.arrived, dest.release = make(chan struct{}, 1), make(chan struct{})
		p := fwdParams(t, cards[0].ID, dest.URL, allReplacements...)
		p.SetIdempotencyKey("fwd-key-busy")
		done := make(chan error, 1)
		go func() {
			_, err := sc.V1ForwardingRequests.Create(ctx, p)
			done <- err
		}()
		<-dest.arrived
		_, err := sc.V1ForwardingRequests.Create(ctx, p)
		wantStripeError(t, err, http.StatusConflict, "idempotency_key_in_use")
		close(dest.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestFaults checks each injected fault through stripe-go.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	statuses := func(t *testing.T, sc *stripe.Client, n int) []int {
		t.Helper()
		var out []int
		for range n {
			_, err := sc.V1Balance.Retrieve(ctx, nil)
			if err == nil {
				out = append(out, 200)
				continue
			}
			se, ok := err.(*stripe.Error)
			if !ok {
				t.Fatal(err)
			}
			if se.HTTPStatusCode == 429 && se.Code != "rate_limit" || se.HTTPStatusCode == 500 && se.Type != "api_error" {
				t.Fatalf("fault error %+v", se)
			}
			out = append(out, se.HTTPStatusCode)
		}
		return out
	}
	tests := []struct {
		name   string
		faults Faults
		want   []int
		stats  func(Stats) bool
	}{
		{"429 every 3rd, bursts of 2", Faults{RateLimitEvery: 3, RateLimitBurst: 2},
			[]int{200, 200, 429, 429, 200, 429, 429, 200, 429}, func(s Stats) bool { return s.RateLimited == 5 }},
		{"single 429s", Faults{RateLimitEvery: 2}, []int{200, 429, 200, 429}, func(s Stats) bool { return s.RateLimited == 2 }},
		{"500 every 2nd", Faults{ServerErrorEvery: 2}, []int{200, 500, 200, 500}, func(s Stats) bool { return s.ServerErrors == 2 }},
		{"429 wins over 500", Faults{RateLimitEvery: 2, ServerErrorEvery: 3}, []int{200, 429, 500, 429, 200, 429},
			func(s Stats) bool { return s.RateLimited == 3 && s.ServerErrors == 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, _, sc := startSim(t, Config{}, testSpec)
			sim.SetFaults(tc.faults)
			if got := statuses(t, sc, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Fatalf("statuses %v; want %v", got, tc.want)
			}
			if st := sim.Stats(); !tc.stats(st) || st.Requests != len(tc.want) {
				t.Fatalf("stats %+v", st)
			}
		})
	}

	t.Run("faults hit lists and forwards too", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		dest := newDestination(t, 201, `{}`)
		sim.SetFaults(Faults{RateLimitEvery: 1})
		_, err := sc.V1ForwardingRequests.Create(ctx, fwdParams(t, cards[0].ID, dest.URL, allReplacements...))
		wantStripeError(t, err, 429, "rate_limit")
		l := sc.V1Customers.List(ctx, nil)
		wantStripeError(t, l.Err(), 429, "rate_limit")
		if n := len(dest.requests()); n != 0 {
			t.Fatalf("a rate-limited forward reached the destination %d times", n)
		}
	})
	t.Run("delay", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		const d = 150 * time.Millisecond
		sim.SetFaults(Faults{Delay: d})
		start := time.Now()
		if _, err := sc.V1Balance.Retrieve(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < d {
			t.Fatalf("answered after %v; want at least %v", el, d)
		}
	})
	t.Run("expired and consumed CVCs", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		dest := newDestination(t, 201, `{}`)
		forward := func(pm string) (cvc, reported string) {
			t.Helper()
			fr, err := sc.V1ForwardingRequests.Create(ctx, fwdParams(t, pm, dest.URL, allReplacements...))
			if err != nil {
				t.Fatal(err)
			}
			var rep forwarded
			_ = json.Unmarshal([]byte(fr.RequestDetails.Body), &rep)
			got := dest.requests()
			return got[len(got)-1].body.Card.CVC, rep.Card.CVC
		}
		sim.SetFaults(Faults{ExpiredCVC: true})
		if cvc, rep := forward(cards[0].ID); cvc != "" || rep != "" {
			t.Fatalf("expired CVC forwarded as %q (reported %q); want none", cvc, rep)
		}
		sim.SetFaults(Faults{ConsumeCVC: true})
		c, _ := sim.Card(cards[1].ID)
		if cvc, rep := forward(cards[1].ID); cvc != c.CVC || rep != "***" {
			t.Fatal("first forward under ConsumeCVC carried no CVC")
		}
		if cvc, _ := forward(cards[1].ID); cvc != "" {
			t.Fatal("second forward under ConsumeCVC carried the CVC")
		}
	})
	t.Run("destination down", func(t *testing.T) {
		sim, _, sc := startSim(t, Config{}, testSpec)
		cards, _ := cardPMs(t, sim)
		dest := newDestination(t, 201, `{}`)
		sim.SetFaults(Faults{DestinationDown: true})
		_, err := sc.V1ForwardingRequests.Create(ctx, fwdParams(t, cards[0].ID, dest.URL, allReplacements...))
		wantStripeError(t, err, http.StatusBadGateway, "forwarding_destination_unreachable")
		if st := sim.Stats(); len(dest.requests()) != 0 || st.DestinationErrors != 1 || st.Forwards != 0 {
			t.Fatalf("stats %+v, destination got %d", st, len(dest.requests()))
		}
	})
}

// TestConcurrentForwardsUnderFaults forwards every card from several
// goroutines while 429s and 500s are injected, retrying with a fresh
// idempotency key, and checks each card reached the destination once.
func TestConcurrentForwardsUnderFaults(t *testing.T) {
	sim, _, sc := startSim(t, Config{}, testSpec)
	cards, _ := cardPMs(t, sim)
	dest := newDestination(t, 201, `{}`)
	sim.SetFaults(Faults{RateLimitEvery: 5, RateLimitBurst: 2, ServerErrorEvery: 7})
	work := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, len(cards))
	for w := range 6 {
		wg.Go(func() {
			for pm := range work {
				for attempt := 0; ; attempt++ {
					p := fwdParams(t, pm, dest.URL, allReplacements...)
					p.SetIdempotencyKey(fmt.Sprintf("%s-%d-%d", pm, w, attempt))
					_, err := sc.V1ForwardingRequests.Create(context.Background(), p)
					if err == nil {
						break
					}
					if se, ok := err.(*stripe.Error); !ok || (se.HTTPStatusCode != 429 && se.HTTPStatusCode != 500) || attempt > 20 {
						errs <- err
						break
					}
				}
			}
		})
	}
	for _, pm := range cards {
		work <- pm.ID
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	perPM := map[string]int{}
	for _, r := range dest.requests() {
		perPM[r.body.Metadata["business_key"]]++
	}
	st := sim.Stats()
	for _, pm := range cards {
		if perPM[pm.ID] != 1 || st.ForwardsByPM[pm.ID] != 1 {
			t.Fatalf("%s reached the destination %d times (stats %d); want 1", pm.ID, perPM[pm.ID], st.ForwardsByPM[pm.ID])
		}
	}
	if st.RateLimited == 0 || st.ServerErrors == 0 {
		t.Fatalf("stats %+v: no fault was injected", st)
	}
}

// TestStart serves the simulator on a TCP port, as cardvault dev does.
func TestStart(t *testing.T) {
	srv, err := Start("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Seed(SeedSpec{Customers: 3, PaymentMethods: 12, Seed: 1})
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", srv.URL())
	}
	sc := newStripe(t, srv.URL(), DefaultAPIKey)
	n := 0
	for _, err := range sc.V1PaymentMethods.List(context.Background(), &stripe.PaymentMethodListParams{Type: stripe.String("card")}).All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 12 {
		t.Fatalf("listed %d payment methods; want 12", n)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.V1Balance.Retrieve(context.Background(), nil); err == nil {
		t.Fatal("the simulator still answers after Close")
	}
	if _, err := Start(strings.TrimPrefix(srv.URL(), "http://")+"x", Config{}); err == nil {
		t.Fatal("Start on a bad address succeeded")
	}
}
