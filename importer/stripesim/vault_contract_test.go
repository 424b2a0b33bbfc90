package stripesim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cardvault/cardvault/vault/card"
)

// TestForwardedCardsParseInTheVault forwards cards of every brand to a
// destination that parses them with the vault's own card parser, as
// /cde-import does, and checks each is accepted with the right scheme and
// masked number.
func TestForwardedCardsParseInTheVault(t *testing.T) {
	sim, _, sc := startSim(t, Config{}, SeedSpec{Customers: 10, PaymentMethods: 80, Seed: 3})
	schemes := map[string]card.Scheme{"visa": card.SchemeVisa, "mastercard": card.SchemeMastercard,
		"amex": card.SchemeAmex, "discover": card.SchemeDiscover}
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var f forwarded
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, `{"error":"json"}`, http.StatusBadRequest)
			return
		}
		card, err := card.ParseCard(card.CardInput{Number: f.Card.Number, ExpMonth: f.Card.ExpMonth,
			ExpYear: f.Card.ExpYear, CVC: f.Card.CVC, Name: f.Card.Name})
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"scheme": string(card.PAN.Scheme()), "masked": card.PAN.Masked()})
	}))
	t.Cleanup(dest.Close)

	seen := map[string]bool{}
	for _, pm := range sim.PaymentMethods() {
		fr, err := sc.V1ForwardingRequests.Create(context.Background(), fwdParams(t, pm.ID, dest.URL+"/cde-import", allReplacements...))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		_ = json.Unmarshal([]byte(fr.ResponseDetails.Body), &got)
		c, _ := sim.Card(pm.ID)
		if fr.ResponseDetails.Status != http.StatusCreated || got["scheme"] != string(schemes[pm.Brand]) || got["masked"] != c.Masked() {
			t.Fatalf("%s (%s): vault answered %d %s; want 201 scheme %s", pm.ID, pm.Brand, fr.ResponseDetails.Status, fr.ResponseDetails.Body, schemes[pm.Brand])
		}
		seen[pm.Brand] = true
	}
	if len(seen) != len(brands) {
		t.Fatalf("forwarded brands %v; want all %d", seen, len(brands))
	}
}
