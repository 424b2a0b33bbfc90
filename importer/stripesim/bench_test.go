package stripesim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkSeed measures generating a 100,000-card account.
func BenchmarkSeed(b *testing.B) {
	sim := New(Config{})
	for b.Loop() {
		sim.Seed(SeedSpec{Customers: 10000, PaymentMethods: 100000, LinkEvery: 50, Seed: 1})
	}
}

// BenchmarkForward measures one forwarding request through stripe-go, the
// simulator and a destination on loopback.
func BenchmarkForward(b *testing.B) {
	sim := New(Config{APIKeys: []string{testKey}})
	sim.Seed(testSpec)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	defer dest.Close()
	sc := newStripe(b, srv.URL, testKey)
	pm := sim.PaymentMethods()[0].ID
	p := fwdParams(b, pm, dest.URL, allReplacements...)
	for b.Loop() {
		if _, err := sc.V1ForwardingRequests.Create(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}
