package httpapi_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// panicky is a card-shaped value whose panic message would leak its number.
type panicky struct{ Number string }

func TestPanicAnswers500WithoutCardData(t *testing.T) {
	tests := []struct {
		name  string
		value any
	}{
		{"string", "declined card " + visaPAN},
		{"error", fmt.Errorf("charging %s: %w", visaPAN, errors.New("boom"))},
		{"struct", panicky{Number: visaPAN}},
		{"spaced number", "card 4242 4242 4242 4242 failed"},
	}
	ss := newSafetyServer(t, nil, func(s *httpapi.Server) {
		for i, tt := range tests {
			s.AddTestRoute("POST", fmt.Sprintf("/test/panic/%d", i), vault.ScopeTokensCreate, func(echo.Context) error {
				panic(tt.value)
			})
		}
	})
	tenant, key := vaulttest.Tenant(t, ss.svc)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/test/panic/%d", i)
			for _, headers := range [][]string{nil, idem(fmt.Sprintf("panic-%d", i))} {
				res := ss.do(t, "POST", path, key, `{"card":{"number":"`+visaPAN+`"}}`, headers...)
				require.Equal(t, 500, res.status, "body: %s", res.body)
				typ, code := errorCode(t, res)
				assert.Equal(t, "api_error", typ)
				assert.Equal(t, "internal_error", code)
				assert.Equal(t, "application/json", res.header.Get("Content-Type"))
				reqID := res.header.Get(httpapi.HeaderRequestID)
				require.NotEmpty(t, reqID)
				assert.NotContains(t, string(res.body), "4242")

				line := logLine(t, ss.log.String(), reqID, "panic serving a request")
				assert.Contains(t, line, `"level":"ERROR"`)
				assert.Contains(t, line, "goroutine", "the stack is logged")
				assert.Contains(t, line, "recover_test.go", "the stack reaches the panicking handler")
				assert.Regexp(t, `"panic":"[^"]*4242 ?42\*\*`, line, "the value is logged, masked")
			}
			assert.Zero(t, ss.idempotencyRows(t, tenant), "a panic releases its idempotency key")
		})
	}
	assert.NotContains(t, ss.log.String(), visaPAN)
	assert.NotContains(t, ss.log.String(), "4242 4242 4242 4242")
	assert.Equal(t, 200, ss.do(t, "GET", "/tokens", key, "").status, "the server keeps serving")
}

// logLine returns the log line of request id reqID holding msg.
func logLine(t *testing.T, log, reqID, msg string) string {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, reqID) && strings.Contains(line, msg) {
			return line
		}
	}
	t.Fatalf("no log line %q for %s", msg, reqID)
	return ""
}
