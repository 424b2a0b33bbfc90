package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestACreateOnlyKeyCannotReplaceACardAndVersionsAreListedMasked(t *testing.T) {
	ts := newTestServer(t)
	tenant, reader := vaulttest.Tenant(t, ts.svc, vault.ScopeTokensRead)
	createOnly, _, err := ts.svc.CreateAPIKey(context.Background(), tenant, []vault.Scope{vault.ScopeTokensCreate}, "stripe")
	require.NoError(t, err)
	updater, _, err := ts.svc.CreateAPIKey(context.Background(), tenant, []vault.Scope{vault.ScopeTokensCreate, vault.ScopeTokensUpdate}, "stripe updates")
	require.NoError(t, err)

	first := ts.do(t, http.MethodPost, "/cde-import", createOnly, cardBody("pm_swap", "4242424242424242"))
	require.Equal(t, http.StatusCreated, first.status)
	id := first.json(t)["id"].(string)
	refused := ts.do(t, http.MethodPost, "/cde-import", createOnly, cardBody("pm_swap", "5555555555554444"))
	require.Equal(t, http.StatusForbidden, refused.status, "%s", refused.body)
	_, code := errorCode(t, refused)
	assert.Equal(t, "missing_scope", code)
	assert.Equal(t, "4242", ts.do(t, http.MethodGet, "/tokens/"+id, reader, "").json(t)["account_number_last_four"], "the card is unchanged")

	replaced := ts.do(t, http.MethodPost, "/cde-import", updater, cardBody("pm_swap", "5555555555554444"))
	require.Equal(t, http.StatusOK, replaced.status, "%s", replaced.body)
	assert.Equal(t, id, replaced.json(t)["id"])

	res := ts.do(t, http.MethodGet, "/tokens/"+id+"/versions", reader, "")
	require.Equal(t, http.StatusOK, res.status, "%s", res.body)
	assert.NotContains(t, string(res.body), "4242424242424242")
	var page struct {
		Object string           `json:"object"`
		Data   []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(res.body, &page))
	assert.Equal(t, "list", page.Object)
	require.Len(t, page.Data, 1)
	assert.Equal(t, "424242******4242", page.Data[0]["masked_account_number"])
	assert.Equal(t, first.json(t)["fingerprint"], page.Data[0]["fingerprint"])
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/tokens/"+id+"/versions", ts.key(t, vault.ScopeTokensRead), "").status,
		"another tenant's token is unknown")
}
