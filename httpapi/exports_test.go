package httpapi_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// errCode returns the error code of an error answer.
func errCode(t *testing.T, r response) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// TestExportJobAPI walks the export routes without a worker: the job
// selects the filtered tokens, reads back, lists, shows its pending ledger
// with business keys, aborts once (409 export_ended after), and refuses a
// missing or foreign destination, a prefix destination without url, and a
// key without exports:write; exports:write implies exports:read.
func TestExportJobAPI(t *testing.T) {
	peer := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(peer.Close)
	ts := newTestServer(t)
	key := ts.key(t)
	for i, bk := range []string{"mig_1", "mig_2", "keep_1"} {
		res := ts.do(t, http.MethodPost, "/tokens", key, cardBody(bk, vaultCardNumber(i)))
		require.Equal(t, http.StatusCreated, res.status, "%s", res.body)
	}
	dest := ts.addDestination(t, key, `{"url":"`+peer.URL+`/cde-import","preset":"stripe_own_vault"}`)
	prefixDest := ts.addDestination(t, key, `{"url":"`+peer.URL+`/vaults/*","preset":"stripe_own_vault"}`)

	res := ts.do(t, http.MethodPost, "/tokens/exports", key,
		`{"destination":"`+dest+`","filter":{"business_key_prefix":"mig_"},"headers":[{"name":"X-API-Key","value":"cvk_theirs"}]}`)
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
	job := res.json(t)
	id := job["id"].(string)
	assert.Equal(t, "running", job["status"])
	assert.EqualValues(t, 2, job["counts"].(map[string]any)["total"])
	assert.NotContains(t, string(res.body), "cvk_theirs", "the headers are never shown")

	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/tokens/exports/"+id, key, "").status)
	list := ts.do(t, http.MethodGet, "/tokens/exports?limit=10", key, "")
	require.Equal(t, http.StatusOK, list.status)
	assert.Len(t, list.json(t)["data"], 1)
	items := ts.do(t, http.MethodGet, "/tokens/exports/"+id+"/items?status=pending", key, "")
	require.Equal(t, http.StatusOK, items.status, "%s", items.body)
	data := items.json(t)["data"].([]any)
	require.Len(t, data, 2)
	assert.Equal(t, "mig_", data[0].(map[string]any)["business_key"].(string)[:4])

	abort := ts.do(t, http.MethodPost, "/tokens/exports/"+id+"/abort", key, "")
	require.Equal(t, http.StatusOK, abort.status)
	assert.Equal(t, "aborted", abort.json(t)["status"])
	again := ts.do(t, http.MethodPost, "/tokens/exports/"+id+"/abort", key, "")
	assert.Equal(t, http.StatusConflict, again.status)
	assert.Equal(t, vault.CodeExportEnded, errCode(t, again))

	for _, tc := range []struct {
		name, key, body string
		want            int
	}{
		{"no destination", key, `{}`, http.StatusBadRequest},
		{"unknown destination", key, `{"destination":"fwddst_ZTP7Q2MJ4XKDN5VB6WRCY3HLAE"}`, http.StatusNotFound},
		{"another tenant's destination", ts.key(t, vault.ScopeExportsWrite), `{"destination":"` + dest + `"}`, http.StatusNotFound},
		{"a prefix destination without url", key, `{"destination":"` + prefixDest + `"}`, http.StatusBadRequest},
		{"read-only key", ts.key(t, vault.ScopeExportsRead), `{"destination":"` + dest + `"}`, http.StatusForbidden},
	} {
		r := ts.do(t, http.MethodPost, "/tokens/exports", tc.key, tc.body)
		assert.Equal(t, tc.want, r.status, "%s: %s", tc.name, r.body)
	}
	writer := ts.key(t, vault.ScopeExportsWrite)
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/tokens/exports", writer, "").status, "exports:write implies exports:read")
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/tokens/exports/"+id, writer, "").status, "another tenant's job")
}

// vaultCardNumber returns one of three distinct public test numbers.
func vaultCardNumber(i int) string {
	return []string{"4242424242424242", "5555555555554444", "378282246310005"}[i]
}

// TestExportMappingRoute: GET /tokens/exports/{id}/mapping answers the
// ledger as CSV (vault.ExportMappingColumns), every token once in ledger
// order across more than one page of the ledger, with the remote id and
// the error of sent items; it needs exports:read and a job of the key's
// tenant.
func TestExportMappingRoute(t *testing.T) {
	peer := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(peer.Close)
	ts := newTestServer(t)
	key := ts.key(t)
	const n = 105 // more than a page of the ledger
	for i := 0; i < n; i++ {
		res := ts.do(t, http.MethodPost, "/tokens", key, cardBody(fmt.Sprintf("map_%03d", i), vaulttest.LuhnNumber("424242", 16, i+1)))
		require.Equal(t, http.StatusCreated, res.status, "%s", res.body)
	}
	dest := ts.addDestination(t, key, `{"url":"`+peer.URL+`/cde-import","preset":"stripe_own_vault"}`)
	res := ts.do(t, http.MethodPost, "/tokens/exports", key, `{"destination":"`+dest+`","filter":{"business_key_prefix":"map_"}}`)
	require.Equal(t, http.StatusAccepted, res.status, "%s", res.body)
	id := res.json(t)["id"].(string)
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodPost, "/tokens/exports/"+id+"/abort", key, "").status, "no worker sends while the test writes outcomes")
	pool := vaulttest.Pool(t, dbURL)
	_, err := pool.Exec(context.Background(), `UPDATE export_items SET status = 'succeeded', remote_id = 'remote_1'
		WHERE job_id = $1 AND seq = (SELECT min(seq) FROM export_items WHERE job_id = $1)`, id)
	require.NoError(t, err)
	_, err = pool.Exec(context.Background(), `UPDATE export_items SET status = 'failed', last_error = 'destination answered HTTP 400 (card_declined)'
		WHERE job_id = $1 AND seq = (SELECT max(seq) FROM export_items WHERE job_id = $1)`, id)
	require.NoError(t, err)

	m := ts.do(t, http.MethodGet, "/tokens/exports/"+id+"/mapping", ts.key(t, vault.ScopeExportsRead), "")
	assert.Equal(t, http.StatusNotFound, m.status, "another tenant's job")
	m = ts.do(t, http.MethodGet, "/tokens/exports/"+id+"/mapping", key, "")
	require.Equal(t, http.StatusOK, m.status, "%s", m.body)
	assert.Equal(t, "text/csv; charset=utf-8", m.header.Get("Content-Type"))
	lines, err := csv.NewReader(bytes.NewReader(m.body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, vault.ExportMappingColumns, lines[0])
	require.Len(t, lines, n+1, "one line per token")
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		assert.False(t, seen[l[0]], "token %s twice", l[0])
		seen[l[0]] = true
		assert.Regexp(t, `^map_\d{3}$`, l[1])
	}
	assert.Equal(t, []string{"remote_1", "succeeded", ""}, lines[1][2:])
	assert.Equal(t, []string{"", "failed", "destination answered HTTP 400 (card_declined)"}, lines[n][2:])
	assert.Equal(t, []string{"", "pending", ""}, lines[2][2:])

	assert.Equal(t, http.StatusForbidden, ts.do(t, http.MethodGet, "/tokens/exports/"+id+"/mapping", ts.key(t, vault.ScopeTokensRead), "").status)
	assert.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/tokens/exports/"+uuid.NewString()+"/mapping", key, "").status)
}
