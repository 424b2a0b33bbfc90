package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	cardpkg "github.com/cardvault/cardvault/vault/card"
)

// benchToken is a masked token as tokenize and read answer it.
var benchToken = vault.Token{
	ID: uuid.New(), TenantID: uuid.New(), BusinessKey: "pm_1PgGJ2LkdIwHu7ixN3kRbQ7A", CardholderName: "John Doe",
	ExpiryMonth: 4, ExpiryYear: 2033, IIN: "424242", LastFour: "4242", PANLength: 16, Scheme: cardpkg.Scheme("VISA"),
	Fingerprint: make([]byte, 32), Metadata: map[string]string{}, CVCAvailable: true,
	CreatedAt: time.Date(2026, 11, 22, 15, 16, 55, 0, time.UTC), UpdatedAt: time.Date(2026, 11, 22, 15, 16, 55, 0, time.UTC),
}

// BenchmarkTokenRecordJSON measures the JSON answer of a token record: the
// record alone (Token.Record and encoding/json), and through echo's c.JSON
// as the handlers send it. Run: go test ./httpapi -run '^$' -bench TokenRecordJSON -benchmem
func BenchmarkTokenRecordJSON(b *testing.B) {
	b.Run("encode", func(b *testing.B) {
		enc := json.NewEncoder(io.Discard)
		b.ReportAllocs()
		for b.Loop() {
			if err := enc.Encode(benchToken.Record()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("echo", func(b *testing.B) {
		e := echo.New()
		req := httptest.NewRequest(http.MethodGet, "/tokens/x", nil)
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			if err := e.NewContext(req, rec).JSON(http.StatusOK, benchToken.Record()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
