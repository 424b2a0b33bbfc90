package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// BenchmarkRequestSafetyNoHeader is what the request-safety middleware adds
// to a request without an Idempotency-Key, with every limit on: the
// in-flight slot, the failed-auth check, the key's bucket and the header
// lookup (no database work).
func BenchmarkRequestSafetyNoHeader(b *testing.B) {
	s := &Server{safety: newRequestSafety(Limits{Rate: 1e9, Burst: 1 << 30, AuthFailures: 30, MaxInflight: 256})}
	e := echo.New()
	noop := func(echo.Context) error { return nil }
	h := s.limitInflight(s.limitAuthFailures(s.limitKey(s.idempotent(vault.ScopeTokensCreate)(noop))))
	req := httptest.NewRequest("POST", "/cde-import", strings.NewReader(`{}`))
	c := e.NewContext(req, httptest.NewRecorder())
	c.Set(ctxActor, vault.Actor{APIKeyID: uuid.New()})
	for b.Loop() {
		if err := h(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBucketTake is one token-bucket check of a known key.
func BenchmarkBucketTake(b *testing.B) {
	bk := newBuckets[uuid.UUID](1e9, 1<<30, maxBuckets)
	id := uuid.New()
	now := time.Now()
	for b.Loop() {
		bk.take(id, now)
	}
}
