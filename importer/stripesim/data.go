package stripesim

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
)

// SeedSpec describes the generated account.
type SeedSpec struct {
	Customers      int // customers cus_…; 0 leaves the payment methods unattached
	PaymentMethods int // payment methods pm_…, spread unevenly over the customers
	// LinkEvery makes every Nth payment method (the Nth, 2Nth, …) a Link
	// payment method (type "link", no card); 0 means none.
	LinkEvery int
	// Seed makes the account deterministic: the same spec gives the same
	// ids, owners, brands, card numbers, CVCs and names (expiry years are
	// relative to the current year).
	Seed int64
}

// PaymentMethod is a snapshot of a simulated payment method for
// assertions. It holds no full card number and no CVC.
type PaymentMethod struct {
	ID       string // pm_…
	Customer string // cus_…, "" when unattached
	Type     string // "card" or "link"
	Brand    string // Stripe's brand: "visa", "mastercard", "amex", "discover"; "" for link
	IIN      string // first six digits of the card number; "" for link
	Last4    string // "" for link
	ExpMonth int    // 1–12; 0 for link
	ExpYear  int    // four digits; 0 for link
	Name     string // cardholder name (billing_details.name)
}

// Card is the full card data behind a card payment method, for tests that
// compare what the vault stored with what Stripe held. Its String,
// GoString, Format and LogValue show only the masked number: keep Number
// and CVC out of logs anyway.
type Card struct {
	Number   string
	CVC      string
	ExpMonth int
	ExpYear  int
	Name     string
}

// Masked returns the card number as first six, stars, last four.
func (c Card) Masked() string { return mask(c.Number) }

// String returns "Card{424242******4242 03/2030}".
func (c Card) String() string {
	return fmt.Sprintf("Card{%s %02d/%d}", c.Masked(), c.ExpMonth, c.ExpYear)
}

// GoString is String, so %#v shows no card data either.
func (c Card) GoString() string { return c.String() }

// Format prints String for every verb.
func (c Card) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue logs only the masked number and the expiry.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }

// customer is a simulated customer.
type customer struct {
	id      string
	name    string
	email   string
	created int64
	pms     []*paymentMethod // newest first, as Stripe lists them
}

// paymentMethod is a simulated payment method; card is nil for Link.
type paymentMethod struct {
	id          string
	customer    string
	typ         string
	created     int64
	name        string
	email       string
	brand       brand
	card        *Card
	fingerprint string
}

// dataset is one seeded account; it is never modified after generate.
type dataset struct {
	customers  []*customer // newest first
	customerBy map[string]*customer
	pms        []*paymentMethod // newest first
	pmBy       map[string]*paymentMethod
}

// brand is a card brand with the public test BIN the simulator uses.
type brand struct {
	name    string // Stripe's card.brand
	display string // Stripe's card.display_brand
	prefix  string // six-digit public test IIN
	length  int    // PAN length
	cvcLen  int
	weight  int
}

// brands are the generated card brands, on the public test ranges Stripe
// documents (4242 42…, 5555 55…, 3782 82…, 6011 11…).
var brands = []brand{
	{name: "visa", display: "visa", prefix: "424242", length: 16, cvcLen: 3, weight: 50},
	{name: "mastercard", display: "mastercard", prefix: "555555", length: 16, cvcLen: 3, weight: 30},
	{name: "amex", display: "american_express", prefix: "378282", length: 15, cvcLen: 4, weight: 12},
	{name: "discover", display: "discover", prefix: "601111", length: 16, cvcLen: 3, weight: 8},
}

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
		"Margaret", "Dennis", "Radia", "Niklaus", "Hedy", "John", "Sophie", "Tim", "Anita", "Linus"}
	lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
		"Thompson", "Hamilton", "Ritchie", "Perlman", "Wirth", "Lamarr", "Backus", "Wilson", "Lee", "Borg", "Torvalds"}
)

// Seed replaces the simulator's account by the one spec describes:
// spec.Customers customers and spec.PaymentMethods payment methods, every
// LinkEvery-th a Link one. It also forgets which CVCs were used. Forwarding
// requests and idempotency keys already answered are kept.
func (s *Sim) Seed(spec SeedSpec) {
	d := generate(spec, time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = d
	s.cvcUsed = make(map[string]bool)
}

// PaymentMethods returns every payment method, in the order Stripe lists
// them (newest first).
func (s *Sim) PaymentMethods() []PaymentMethod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]PaymentMethod, 0, len(s.data.pms))
	for _, pm := range s.data.pms {
		out = append(out, pm.snapshot())
	}
	return out
}

// Customers returns the customer ids in the order Stripe lists them.
func (s *Sim) Customers() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.data.customers))
	for _, c := range s.data.customers {
		out = append(out, c.id)
	}
	return out
}

// Card returns the full card behind payment method id; false when id is
// unknown or a Link payment method.
func (s *Sim) Card(id string) (Card, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pm := s.data.pmBy[id]
	if pm == nil || pm.card == nil {
		return Card{}, false
	}
	return *pm.card, true
}

// snapshot is the exported view of pm.
func (pm *paymentMethod) snapshot() PaymentMethod {
	out := PaymentMethod{ID: pm.id, Customer: pm.customer, Type: pm.typ, Name: pm.name}
	if c := pm.card; c != nil {
		out.Brand = pm.brand.name
		out.IIN = c.Number[:6]
		out.Last4 = c.Number[len(c.Number)-4:]
		out.ExpMonth, out.ExpYear = c.ExpMonth, c.ExpYear
	}
	return out
}

// baseCreated is the creation time of the oldest generated object.
const baseCreated = 1700000000

// generate builds the account spec describes; now only sets expiry years.
func generate(spec SeedSpec, now time.Time) *dataset {
	rng := rand.New(rand.NewPCG(uint64(spec.Seed), 0x5eed5eed))
	d := &dataset{customerBy: make(map[string]*customer), pmBy: make(map[string]*paymentMethod)}
	ids := make(map[string]bool)
	nc := max(spec.Customers, 0)
	for i := range nc {
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		c := &customer{
			id:      uniqueID(rng, "cus_", ids),
			name:    first + " " + last,
			email:   fmt.Sprintf("%s.%s.%d@example.com", strings.ToLower(first), strings.ToLower(last), i),
			created: baseCreated + int64(nc-i)*3600,
		}
		d.customers = append(d.customers, c)
		d.customerBy[c.id] = c
	}
	np := max(spec.PaymentMethods, 0)
	stride, offset := uint64(7919), rng.Uint64()
	for i := range np {
		pm := &paymentMethod{
			id:          uniqueID(rng, "pm_", ids),
			typ:         "card",
			created:     baseCreated + int64(np-i)*60,
			fingerprint: randID(rng, 16),
		}
		var owner *customer
		if nc > 0 {
			owner = d.customers[rng.IntN(nc)]
			pm.customer, pm.name, pm.email = owner.id, owner.name, owner.email
		} else {
			pm.name = firstNames[rng.IntN(len(firstNames))] + " " + lastNames[rng.IntN(len(lastNames))]
		}
		if spec.LinkEvery > 0 && (i+1)%spec.LinkEvery == 0 {
			pm.typ = "link"
		} else {
			pm.brand = pickBrand(rng)
			pm.card = newCard(rng, pm.brand, uint64(i)*stride+offset, pm.name, now)
		}
		d.pms = append(d.pms, pm)
		d.pmBy[pm.id] = pm
		if owner != nil {
			owner.pms = append(owner.pms, pm)
		}
	}
	return d
}

// pickBrand draws a brand by weight.
func pickBrand(rng *rand.Rand) brand {
	total := 0
	for _, b := range brands {
		total += b.weight
	}
	n := rng.IntN(total)
	for _, b := range brands {
		if n < b.weight {
			return b
		}
		n -= b.weight
	}
	return brands[0]
}

// newCard returns a card of brand b. The account-number digits between the
// IIN and the check digit are seq modulo their range, so cards generated
// with distinct seq (fewer than 10^8 apart) have distinct numbers.
func newCard(rng *rand.Rand, b brand, seq uint64, name string, now time.Time) *Card {
	bodyLen := b.length - len(b.prefix) - 1
	mod := uint64(1)
	for range bodyLen {
		mod *= 10
	}
	partial := b.prefix + fmt.Sprintf("%0*d", bodyLen, seq%mod)
	cvcMod := 1000
	if b.cvcLen == 4 {
		cvcMod = 10000
	}
	return &Card{
		Number:   partial + string(rune('0'+luhnCheckDigit(partial))),
		CVC:      fmt.Sprintf("%0*d", b.cvcLen, rng.IntN(cvcMod)),
		ExpMonth: 1 + rng.IntN(12),
		ExpYear:  now.Year() + 1 + rng.IntN(6),
		Name:     name,
	}
}

// luhnCheckDigit returns the digit that makes partial+digit pass Luhn.
func luhnCheckDigit(partial string) int {
	sum := 0
	double := true // the rightmost digit of partial is doubled once the check digit is appended
	for i := len(partial) - 1; i >= 0; i-- {
		d := int(partial[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

// luhnValid reports whether number passes the Luhn check.
func luhnValid(number string) bool {
	if len(number) < 2 {
		return false
	}
	return luhnCheckDigit(number[:len(number)-1]) == int(number[len(number)-1]-'0')
}

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randID returns n random alphanumeric characters.
func randID(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// uniqueID returns prefix plus 14 random characters not yet in seen.
func uniqueID(rng *rand.Rand, prefix string, seen map[string]bool) string {
	for {
		id := prefix + randID(rng, 14)
		if !seen[id] {
			seen[id] = true
			return id
		}
	}
}

// base62 renders the first n bytes of b as alphanumeric characters.
func base62(b []byte, n int) string {
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[int(b[i%len(b)])%len(alphabet)]
	}
	return string(out)
}

// mask returns the first six and last four digits of number with stars
// between, as Stripe shows a forwarded card number ("424242******4242").
func mask(number string) string {
	if len(number) < 11 {
		return strings.Repeat("*", len(number))
	}
	return number[:6] + strings.Repeat("*", len(number)-10) + number[len(number)-4:]
}
