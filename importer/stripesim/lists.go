package stripesim

import (
	"net/http"
	"net/url"
	"strconv"
)

// listObject is Stripe's list envelope.
type listObject struct {
	Object  string `json:"object"`
	Data    any    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

type customerJSON struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Created       int64             `json:"created"`
	Currency      *string           `json:"currency"`
	Description   *string           `json:"description"`
	Email         string            `json:"email"`
	InvoicePrefix string            `json:"invoice_prefix"`
	Livemode      bool              `json:"livemode"`
	Metadata      map[string]string `json:"metadata"`
	Name          string            `json:"name"`
}

type paymentMethodJSON struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	AllowRedisplay string            `json:"allow_redisplay"`
	BillingDetails billingDetails    `json:"billing_details"`
	Card           *cardJSON         `json:"card,omitempty"`
	Created        int64             `json:"created"`
	Customer       *string           `json:"customer"`
	Link           *linkJSON         `json:"link,omitempty"`
	Livemode       bool              `json:"livemode"`
	Metadata       map[string]string `json:"metadata"`
	Type           string            `json:"type"`
}

type billingDetails struct {
	Address addressJSON `json:"address"`
	Email   *string     `json:"email"`
	Name    *string     `json:"name"`
	Phone   *string     `json:"phone"`
}

type addressJSON struct {
	City       *string `json:"city"`
	Country    *string `json:"country"`
	Line1      *string `json:"line1"`
	Line2      *string `json:"line2"`
	PostalCode *string `json:"postal_code"`
	State      *string `json:"state"`
}

// cardJSON is a payment method's card: never the full number.
type cardJSON struct {
	Brand             string          `json:"brand"`
	Checks            cardChecks      `json:"checks"`
	Country           string          `json:"country"`
	DisplayBrand      string          `json:"display_brand"`
	ExpMonth          int             `json:"exp_month"`
	ExpYear           int             `json:"exp_year"`
	Fingerprint       string          `json:"fingerprint"`
	Funding           string          `json:"funding"`
	GeneratedFrom     *struct{}       `json:"generated_from"`
	Last4             string          `json:"last4"`
	Networks          cardNetworks    `json:"networks"`
	RegulatedStatus   string          `json:"regulated_status"`
	ThreeDSecureUsage map[string]bool `json:"three_d_secure_usage"`
	Wallet            *struct{}       `json:"wallet"`
}

type cardChecks struct {
	AddressLine1Check      *string `json:"address_line1_check"`
	AddressPostalCodeCheck *string `json:"address_postal_code_check"`
	CVCCheck               string  `json:"cvc_check"`
}

type cardNetworks struct {
	Available []string `json:"available"`
	Preferred *string  `json:"preferred"`
}

type linkJSON struct {
	Email string `json:"email"`
}

// json returns the customer object.
func (c *customer) json() customerJSON {
	return customerJSON{
		ID: c.id, Object: "customer", Created: c.created, Email: c.email,
		InvoicePrefix: c.id[4:12], Metadata: map[string]string{}, Name: c.name,
	}
}

// json returns the payment method object.
func (pm *paymentMethod) json() paymentMethodJSON {
	name, email, country := pm.name, pm.email, "US"
	out := paymentMethodJSON{
		ID: pm.id, Object: "payment_method", AllowRedisplay: "unspecified",
		BillingDetails: billingDetails{Address: addressJSON{Country: &country}, Name: &name},
		Created:        pm.created, Metadata: map[string]string{}, Type: pm.typ,
	}
	if email != "" {
		out.BillingDetails.Email = &email
	}
	if pm.customer != "" {
		cus := pm.customer
		out.Customer = &cus
	}
	if c := pm.card; c != nil {
		out.Card = &cardJSON{
			Brand: pm.brand.name, Checks: cardChecks{CVCCheck: "pass"}, Country: "US",
			DisplayBrand: pm.brand.display, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear,
			Fingerprint: pm.fingerprint, Funding: "credit", Last4: c.Number[len(c.Number)-4:],
			Networks:        cardNetworks{Available: []string{pm.brand.name}},
			RegulatedStatus: "unregulated", ThreeDSecureUsage: map[string]bool{"supported": true},
		}
	} else {
		out.Link = &linkJSON{Email: pm.email}
	}
	return out
}

// account answers GET /v1/account.
func (s *Sim) account() answer {
	return okAnswer(map[string]any{
		"id": s.accountID, "object": "account", "business_type": "company", "type": "standard",
		"country": "US", "default_currency": "usd", "email": "owner@example.com",
		"charges_enabled": true, "payouts_enabled": true, "details_submitted": true,
		"created": s.accountTime, "metadata": map[string]string{},
		"settings": map[string]any{"dashboard": map[string]any{"display_name": "cardvault Stripe simulator"}},
	})
}

// balance answers GET /v1/balance.
func balance() answer {
	funds := []map[string]any{{"amount": 0, "currency": "usd", "source_types": map[string]int{"card": 0}}}
	return okAnswer(map[string]any{"object": "balance", "available": funds, "pending": funds, "livemode": false})
}

// listCustomers answers GET /v1/customers.
func (s *Sim) listCustomers(q url.Values) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return paginate(s.data.customers, (*customer).json, func(c *customer) string { return c.id },
		"customer", "/v1/customers", q)
}

// retrieveCustomer answers GET /v1/customers/{id}.
func (s *Sim) retrieveCustomer(id string) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.data.customerBy[id]
	if c == nil {
		return noSuch("customer", id, "id")
	}
	return okAnswer(c.json())
}

// listCustomerPaymentMethods answers GET /v1/customers/{id}/payment_methods.
func (s *Sim) listCustomerPaymentMethods(id string, q url.Values) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.data.customerBy[id]
	if c == nil {
		return noSuch("customer", id, "customer")
	}
	return s.listPMs(c.pms, q, "/v1/customers/"+id+"/payment_methods")
}

// retrieveCustomerPaymentMethod answers
// GET /v1/customers/{id}/payment_methods/{pm}.
func (s *Sim) retrieveCustomerPaymentMethod(cus, id string) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.data.customerBy[cus] == nil {
		return noSuch("customer", cus, "customer")
	}
	pm := s.data.pmBy[id]
	if pm == nil || pm.customer != cus {
		return noSuch("payment_method", id, "payment_method")
	}
	return okAnswer(pm.json())
}

// listPaymentMethods answers GET /v1/payment_methods?customer=&type=.
func (s *Sim) listPaymentMethods(q url.Values) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pms := s.data.pms
	if id := q.Get("customer"); id != "" {
		c := s.data.customerBy[id]
		if c == nil {
			return noSuch("customer", id, "customer")
		}
		pms = c.pms
	}
	return s.listPMs(pms, q, "/v1/payment_methods")
}

// listPMs filters pms by the type parameter and paginates them.
func (s *Sim) listPMs(pms []*paymentMethod, q url.Values, path string) answer {
	if typ := q.Get("type"); typ != "" {
		filtered := make([]*paymentMethod, 0, len(pms))
		for _, pm := range pms {
			if pm.typ == typ {
				filtered = append(filtered, pm)
			}
		}
		pms = filtered
	}
	return paginate(pms, (*paymentMethod).json, func(pm *paymentMethod) string { return pm.id },
		"payment_method", path, q)
}

// retrievePaymentMethod answers GET /v1/payment_methods/{id}.
func (s *Sim) retrievePaymentMethod(id string) answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pm := s.data.pmBy[id]
	if pm == nil {
		return noSuch("payment_method", id, "payment_method")
	}
	return okAnswer(pm.json())
}

// paginate answers one page of items like Stripe: limit (1–100, default
// 10), then starting_after (the items after that id) or ending_before (the
// items just before that id, still in list order); has_more says whether
// more items lie beyond the page in the walking direction.
func paginate[T, J any](items []T, render func(T) J, id func(T) string, object, path string, q url.Values) answer {
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return invalidParam("parameter_invalid_integer", "limit",
				"Invalid limit: must be an integer from 1 to 100.")
		}
		limit = n
	}
	after, before := q.Get("starting_after"), q.Get("ending_before")
	if after != "" && before != "" {
		return invalidParam("", "ending_before",
			"You may only specify one of these parameters: ending_before, starting_after.")
	}
	lo, hi := 0, len(items)
	switch {
	case after != "":
		i := indexOf(items, id, after)
		if i < 0 {
			return noSuch(object, after, "starting_after")
		}
		lo = i + 1
	case before != "":
		i := indexOf(items, id, before)
		if i < 0 {
			return noSuch(object, before, "ending_before")
		}
		hi = i
	}
	var hasMore bool
	if before != "" {
		hasMore = hi-lo > limit
		lo = max(lo, hi-limit)
	} else {
		hasMore = hi-lo > limit
		hi = min(hi, lo+limit)
	}
	data := make([]J, 0, hi-lo)
	for _, it := range items[lo:hi] {
		data = append(data, render(it))
	}
	return answer{status: http.StatusOK, body: marshal(listObject{Object: "list", Data: data, HasMore: hasMore, URL: path})}
}

// indexOf returns the position of the item with the given id, or -1.
func indexOf[T any](items []T, id func(T) string, want string) int {
	for i, it := range items {
		if id(it) == want {
			return i
		}
	}
	return -1
}
