package httpapi_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// BenchmarkCDEImportIdempotency measures POST /cde-import in process
// (handler, middleware, PostgreSQL; no network): without an
// Idempotency-Key, with a fresh key per request (claim + store), and a
// retry that is replayed.
func BenchmarkCDEImportIdempotency(b *testing.B) {
	svc := vaulttest.NewService(b, dbURL, vaulttest.Options{})
	_, key := vaulttest.Tenant(b, svc)
	srv := httpapi.New(svc, slog.New(slog.DiscardHandler))
	post := func(b *testing.B, body, idemKey string, want int) {
		req := httptest.NewRequest("POST", "/cde-import", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		if idemKey != "" {
			req.Header.Set(httpapi.HeaderIdempotencyKey, idemKey)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
		}
	}
	run := 0
	body := func(i int) string {
		return cardBody(fmt.Sprintf("pm_bench_%d_%d", run, i), vaulttest.LuhnNumber("424242", 16, i))
	}
	b.Run("no key", func(b *testing.B) {
		run++
		for i := 0; b.Loop(); i++ {
			post(b, body(i), "", http.StatusCreated)
		}
	})
	b.Run("fresh key", func(b *testing.B) {
		run++
		for i := 0; b.Loop(); i++ {
			post(b, body(i), fmt.Sprintf("k-%d-%d", run, i), http.StatusCreated)
		}
	})
	b.Run("replayed", func(b *testing.B) {
		run++
		post(b, body(0), fmt.Sprintf("k-%d", run), http.StatusCreated)
		for b.Loop() {
			post(b, body(0), fmt.Sprintf("k-%d", run), http.StatusCreated)
		}
	})
}
