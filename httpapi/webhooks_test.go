package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/egress"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
	"github.com/cardvault/cardvault/webhook"
)

func TestWebhookEndpoints(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	tenant := vaultActorTenant(t, ts, key)

	res := ts.do(t, http.MethodGet, "/webhook", key, "")
	assert.Equal(t, http.StatusNotFound, res.status, "%s", res.body)

	res = ts.do(t, http.MethodPut, "/webhook", key, `{"url":"https://hooks.example.com/vault"}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	set := res.json(t)
	assert.Equal(t, "https://hooks.example.com/vault", set["url"])
	assert.Equal(t, "2026-11-01T12:00:00Z", set["created_at"])
	assert.Regexp(t, `^whsec_[A-Za-z0-9_-]{43}$`, set["secret"])

	res = ts.do(t, http.MethodGet, "/webhook", key, "")
	require.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, map[string]any{"url": "https://hooks.example.com/vault", "created_at": "2026-11-01T12:00:00Z"}, res.json(t),
		"the secret is shown only when it is set")

	res = ts.do(t, http.MethodPut, "/webhook", key, `{"url":"https://hooks.example.com/v2"}`)
	require.Equal(t, http.StatusOK, res.status)
	assert.NotEqual(t, set["secret"], res.json(t)["secret"], "a new URL rotates the secret")

	assert.Equal(t, http.StatusNoContent, ts.do(t, http.MethodDelete, "/webhook", key, "").status)
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodDelete, "/webhook", key, "").status)
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/webhook", key, "").status)

	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"plain http", `{"url":"http://hooks.example.com/"}`, 422, "invalid_url"},
		{"user info", `{"url":"https://me:pw@hooks.example.com/"}`, 422, "invalid_url"},
		{"card number in the URL", `{"url":"https://hooks.example.com/4242424242424242"}`, 422, "sensitive_data"},
		{"no url", `{}`, 400, "parameter_missing"},
		{"unknown field", `{"url":"https://hooks.example.com/","secret":"x"}`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := ts.do(t, http.MethodPut, "/webhook", key, tc.body)
			assert.Equal(t, tc.status, res.status, "%s", res.body)
			if tc.code != "" {
				assert.Equal(t, tc.code, res.json(t)["error"].(map[string]any)["code"])
			}
			assert.NotContains(t, string(res.body), "4242424242424242")
		})
	}

	without := keyWithout(t, ts, tenant, vault.ScopeWebhooksManage)
	for _, route := range [][2]string{{"PUT", "/webhook"}, {"GET", "/webhook"}, {"DELETE", "/webhook"}, {"GET", "/webhook/deliveries"}} {
		res := ts.do(t, route[0], route[1], without, `{"url":"https://hooks.example.com/"}`)
		assert.Equal(t, http.StatusForbidden, res.status, "%s %s", route[0], route[1])
	}
}

func TestWebhookDeliveredThroughTheAPI(t *testing.T) {
	ts := newTestServer(t)
	vaulttest.Truncate(t, vaulttest.Pool(t, dbURL)) // the outbox is shared: start it empty
	key := ts.key(t)
	type request struct {
		header http.Header
		body   []byte
	}
	got := make(chan request, 10)
	calls := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.Header.Clone(), body}
		if calls++; calls == 1 {
			w.WriteHeader(http.StatusInternalServerError) // the first attempt fails
		}
	}))
	defer rcv.Close()
	res := ts.do(t, http.MethodPut, "/webhook", key, `{"url":"`+rcv.URL+`/hook"}`)
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	secret := res.json(t)["secret"].(string)

	created := ts.do(t, http.MethodPost, "/cde-import", key, cardBody("pm_hook", "4242424242424242"))
	require.Equal(t, http.StatusCreated, created.status)
	d := webhook.NewDeliverer(ts.svc, egress.New(egress.Config{AllowLoopback: true, Timeout: time.Second}), slog.New(slog.DiscardHandler), "test")
	next := func() request {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no webhook request arrived")
			return request{}
		}
	}
	n, err := d.DeliverDue(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	first := next()
	ts.clock.Advance(2 * time.Minute)
	n, err = d.DeliverDue(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	second := next()

	assert.Equal(t, first.body, second.body)
	require.NoError(t, webhook.Verify(second.header.Get("Vault-Signature"), second.body, secret, 5*time.Minute, ts.clock.Now()))
	var ev struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(second.body, &ev))
	assert.Equal(t, "token.created", ev.Type)
	assert.JSONEq(t, string(created.body), string(ev.Data), "the event data is the API's own answer")

	res = ts.do(t, http.MethodGet, "/webhook/deliveries?limit=10", key, "")
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	var page struct {
		Object  string           `json:"object"`
		Data    []map[string]any `json:"data"`
		HasMore bool             `json:"has_more"`
	}
	require.NoError(t, json.Unmarshal(res.body, &page))
	assert.Equal(t, "list", page.Object)
	require.Len(t, page.Data, 2)
	for i, want := range []struct {
		attempt float64
		status  float64
		outcome string
	}{{2, 200, "delivered"}, {1, 500, "retrying"}} {
		row := page.Data[i]
		assert.Equal(t, ev.ID, row["event_id"])
		assert.Equal(t, "token.created", row["event_type"])
		assert.Equal(t, want.attempt, row["attempt"])
		assert.Equal(t, want.status, row["status"])
		assert.Equal(t, want.outcome, row["outcome"])
		assert.Equal(t, rcv.URL+"/hook", row["url"])
	}
	older := ts.do(t, http.MethodGet, "/webhook/deliveries?limit=1&starting_after="+jsonNumber(page.Data[0]["id"]), key, "")
	require.Equal(t, http.StatusOK, older.status)
	assert.Contains(t, string(older.body), `"outcome":"retrying"`)
	assert.Equal(t, http.StatusBadRequest, ts.do(t, http.MethodGet, "/webhook/deliveries?starting_after=x", key, "").status)
}

// jsonNumber formats a decoded JSON number as an integer.
func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
