//go:build linux

package main

// Export jobs between two real vault processes: vault A sends its cards
// through its forwarding engine (the stripe_own_vault preset) into vault B's
// /cde-import, over loopback.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// logOnFailure prints the end of v's log when the test fails.
func logOnFailure(t *testing.T, v *e2e.Vault) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the end of the vault's log:\n%s", v.LogTail(logTail))
		}
	})
}

// exportJobView is what the tests read of an export job.
type exportJobView struct {
	ID            string  `json:"id"`
	Status        string  `json:"status"`
	FailureReason *string `json:"failure_reason"`
	Counts        struct {
		Total, Attempts, Successes, Failures, Pending int64
	} `json:"counts"`
}

// exportItemView is one ledger line.
type exportItemView struct {
	TokenID     string  `json:"token_id"`
	BusinessKey *string `json:"business_key"`
	Status      string  `json:"status"`
	Attempts    int     `json:"attempts"`
	LastError   *string `json:"last_error"`
	RemoteID    *string `json:"remote_id"`
}

func getExportJob(t *testing.T, c *e2e.Client, id string) exportJobView {
	t.Helper()
	b, err := c.Call(context.Background(), http.MethodGet, "/tokens/exports/"+id, nil, http.StatusOK)
	require.NoError(t, err)
	var j exportJobView
	require.NoError(t, json.Unmarshal(b, &j))
	return j
}

func exportItems(t *testing.T, c *e2e.Client, id string) []exportItemView {
	t.Helper()
	b, err := c.Call(context.Background(), http.MethodGet, "/tokens/exports/"+id+"/items?limit=100", nil, http.StatusOK)
	require.NoError(t, err)
	var page struct {
		Data    []exportItemView `json:"data"`
		HasMore bool             `json:"has_more"`
	}
	require.NoError(t, json.Unmarshal(b, &page))
	require.False(t, page.HasMore)
	return page.Data
}

// derefOr returns *p, or none when p is nil.
func derefOr(p *string, none string) string {
	if p == nil {
		return none
	}
	return *p
}

// seedCards tokenizes n cards under business keys prefix-i and returns
// business key → card number.
func seedCards(t *testing.T, c *e2e.Client, prefix string, first, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := first; i < first+n; i++ {
		bk, number := fmt.Sprintf("%s%d", prefix, i), e2e.CardNumber(i)
		_, err := c.Call(context.Background(), http.MethodPost, "/tokens", e2e.ForwardBody(bk, number), http.StatusCreated)
		require.NoError(t, err)
		out[bk] = number
	}
	return out
}

// createDestination adds a stripe_own_vault destination for url (or the
// custom destination body) and returns its id.
func createDestination(t *testing.T, c *e2e.Client, body string) string {
	t.Helper()
	b, err := c.Call(context.Background(), http.MethodPost, "/forwarding/destinations", []byte(body), http.StatusCreated)
	require.NoError(t, err)
	var d struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	return d.ID
}

func startExport(t *testing.T, c *e2e.Client, body string) exportJobView {
	t.Helper()
	b, err := c.Call(context.Background(), http.MethodPost, "/tokens/exports", []byte(body), http.StatusAccepted)
	require.NoError(t, err)
	var j exportJobView
	require.NoError(t, json.Unmarshal(b, &j))
	return j
}

// TestExportJobIntoAnotherVaultResumesAfterSIGKILL exports 30 of vault A's
// cards into vault B, kills A with SIGKILL half way, restarts it, and
// checks that the job finishes with every card on B exactly once, equal to
// A's, under its business key, without its CVC, the mapping complete, and
// each card's token.export audit row committed on A before B stored it.
func TestExportJobIntoAnotherVaultResumesAfterSIGKILL(t *testing.T) {
	bin := buildVault(t)
	a, b := newChildSetup(t, bin), newChildSetup(t, bin)
	envA := append(append([]string{}, a.env...), "VAULT_EGRESS_ALLOW_LOOPBACK=true", "VAULT_EXPORT_LEASE_TTL=2s")
	vb := startChildVault(t, bin, b.env...)
	logOnFailure(t, vb)
	va := startChildVault(t, bin, envA...)
	logOnFailure(t, va)
	ca := e2e.NewClient(va.URL(), a.key, 2, 10*time.Second)
	defer ca.Close()
	cb := e2e.NewClient(vb.URL(), b.key, 2, 10*time.Second)
	defer cb.Close()

	const n = 30
	cards := seedCards(t, ca, "exp-", 1, n)
	seedCards(t, ca, "other-", 100, 3) // not selected by the filter
	dest := createDestination(t, ca, fmt.Sprintf(`{"preset":"stripe_own_vault","url":%q}`, vb.URL()+"/cde-import"))
	job := startExport(t, ca, fmt.Sprintf(`{"destination":%q,"filter":{"business_key_prefix":"exp-"},
		"headers":[{"name":"X-API-Key","value":%q}],"rate_limit":8}`, dest, b.key))
	require.Equal(t, "running", job.Status)
	require.EqualValues(t, n, job.Counts.Total)

	waitFor(t, 30*time.Second, "a third of the cards exported", func() bool {
		return getExportJob(t, ca, job.ID).Counts.Successes >= n/3
	})
	require.NoError(t, va.Signal(syscall.SIGKILL))
	waitExit(t, va, 10*time.Second)
	atKill := len(tokenIDs(t, b.pool, b.tenantID))
	require.Less(t, atKill, n, "the job must be stopped half way for the test to prove a resume")

	va = startChildVault(t, bin, envA...)
	logOnFailure(t, va)
	ca2 := e2e.NewClient(va.URL(), a.key, 2, 10*time.Second)
	defer ca2.Close()
	waitFor(t, 60*time.Second, "the export to end", func() bool { return getExportJob(t, ca2, job.ID).Status != "running" })
	end := getExportJob(t, ca2, job.ID)
	require.Equal(t, "finished", end.Status)
	assert.EqualValues(t, n, end.Counts.Successes)
	assert.Zero(t, end.Counts.Failures)

	items := exportItems(t, ca2, job.ID)
	require.Len(t, items, n)
	assert.Len(t, tokenIDs(t, b.pool, b.tenantID), n, "every card is on B exactly once")
	remotes := map[string]bool{}
	for _, it := range items {
		require.Equal(t, "succeeded", it.Status, "last error: %v", derefOr(it.LastError, "none"))
		require.NotNil(t, it.RemoteID)
		require.NotNil(t, it.BusinessKey)
		assert.False(t, remotes[*it.RemoteID], "two tokens mapped to one remote token")
		remotes[*it.RemoteID] = true
		checkRemoteCard(t, cb, *it.RemoteID, *it.BusinessKey, cards[*it.BusinessKey])
		checkAuditedBeforeStored(t, a, b, job.ID, it)
	}
}

// checkRemoteCard checks that B's token remoteID holds number under
// businessKey and no CVC.
func checkRemoteCard(t *testing.T, cb *e2e.Client, remoteID, businessKey, number string) {
	t.Helper()
	body, err := cb.Call(context.Background(), http.MethodPost, "/tokens/"+remoteID+"/detokenize", []byte(`{"reason":"export test"}`), http.StatusOK)
	require.NoError(t, err)
	var r struct {
		BusinessKey string `json:"business_key"`
		Card        struct {
			Number string  `json:"number"`
			CVC    *string `json:"cvc"`
		} `json:"card"`
	}
	require.NoError(t, json.Unmarshal(body, &r))
	assert.Equal(t, businessKey, r.BusinessKey)
	assert.True(t, r.Card.Number == number, "B's token %s holds another card", remoteID) // never print card numbers
	assert.True(t, r.Card.CVC == nil || *r.Card.CVC == "", "a CVC was exported")
}

// checkAuditedBeforeStored checks that A's first token.export audit row of
// the item, naming the job, is older than B's token.
func checkAuditedBeforeStored(t *testing.T, a, b childSetup, jobID string, it exportItemView) {
	t.Helper()
	var audited, stored time.Time
	require.NoError(t, a.pool.QueryRow(context.Background(), `SELECT min(occurred_at) FROM audit_events
		WHERE tenant_id = $1 AND action = 'token.export' AND token_id = $2 AND detail->>'export_id' = $3`,
		a.tenantID, it.TokenID, jobID).Scan(&audited))
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT created_at FROM tokens WHERE id = $1`, *it.RemoteID).Scan(&stored))
	assert.False(t, audited.After(stored), "token %s reached B before its token.export row", it.TokenID)
}

// flakyDestination answers the first request of each business key 503 and
// the next 200 with a token id, except for the key refused, which it
// answers 400 with a card number in its message.
type flakyDestination struct {
	refused string
	mu      sync.Mutex
	seen    map[string]int // business key → requests
}

func (d *flakyDestination) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Card     map[string]any    `json:"card"`
		Metadata map[string]string `json:"metadata"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	bk := body.Metadata["business_key"]
	d.mu.Lock()
	d.seen[bk]++
	n := d.seen[bk]
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case bk == d.refused:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"code":"card_declined","message":"card %s refused"}}`, body.Card["number"])
	case n == 1:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"code":"busy"}}`)
	default:
		fmt.Fprintf(w, `{"id":"remote_%s"}`, bk)
	}
}

func (d *flakyDestination) requests(bk string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[bk]
}

// TestExportJobRetriesAndFailsItemsAndGuardsAccess runs a job against a
// destination answering 503 then 200 (retried) and 400 for one card (that
// item fails with a reason holding no card data), and checks the scope and
// the tenant boundary of POST /tokens/exports.
func TestExportJobRetriesAndFailsItemsAndGuardsAccess(t *testing.T) {
	bin := buildVault(t)
	kek, kekURI := vaulttest.KEK(t)
	a := childSetup{bin: bin, db: migratedDatabase(t)}
	svc := vaulttest.NewService(t, a.db, vaulttest.Options{KEK: kek})
	tenantID, key := vaulttest.Tenant(t, svc)
	a.tenantID, a.key = tenantID.String(), key
	a.env = []string{"VAULT_DATABASE_URL=" + a.db, "VAULT_KEK_URI=" + kekURI}
	a.pool = vaulttest.Pool(t, a.db)
	va := startChildVault(t, bin, append(append([]string{}, a.env...), "VAULT_EGRESS_ALLOW_LOOPBACK=true")...)
	logOnFailure(t, va)
	ca := e2e.NewClient(va.URL(), a.key, 2, 10*time.Second)
	defer ca.Close()
	cards := seedCards(t, ca, "r-", 1, 3)
	fd := &flakyDestination{refused: "r-2", seen: map[string]int{}}
	srv := httptest.NewServer(fd)
	defer srv.Close()
	dest := createDestination(t, ca, fmt.Sprintf(`{"preset":"stripe_own_vault","url":%q}`, srv.URL+"/cde-import"))

	_, readOnly := vaulttest.Tenant(t, svc, vault.ScopeTokensRead)
	_, otherTenant := vaulttest.Tenant(t, svc, vault.ScopeExportsWrite)
	body := fmt.Sprintf(`{"destination":%q}`, dest)
	for _, tc := range []struct {
		name, key string
		want      int
	}{{"wrong scope", readOnly, http.StatusForbidden}, {"another tenant's destination", otherTenant, http.StatusNotFound}} {
		c := e2e.NewClient(va.URL(), tc.key, 1, 10*time.Second)
		ans, err := c.Send(context.Background(), http.MethodPost, "/tokens/exports", []byte(body))
		c.Close()
		require.NoError(t, err)
		assert.Equal(t, tc.want, ans.Status, tc.name)
	}

	job := startExport(t, ca, body)
	waitFor(t, 60*time.Second, "the export to end", func() bool { return getExportJob(t, ca, job.ID).Status != "running" })
	end := getExportJob(t, ca, job.ID)
	require.Equal(t, "finished", end.Status)
	assert.EqualValues(t, 2, end.Counts.Successes)
	assert.EqualValues(t, 1, end.Counts.Failures)
	for _, it := range exportItems(t, ca, job.ID) {
		bk := *it.BusinessKey
		if bk == fd.refused {
			assert.Equal(t, "failed", it.Status)
			assert.Equal(t, 1, it.Attempts, "a 400 is not retried")
			require.NotNil(t, it.LastError)
			assert.Equal(t, "destination answered HTTP 400 (card_declined)", *it.LastError)
			assert.NotContains(t, *it.LastError, cards[bk][6:12], "card data in the ledger")
			continue
		}
		assert.Equal(t, "succeeded", it.Status, bk)
		assert.Equal(t, 2, it.Attempts, "a 503 is retried once, then succeeds")
		assert.Equal(t, 2, fd.requests(bk))
		require.NotNil(t, it.RemoteID)
		assert.Equal(t, "remote_"+bk, *it.RemoteID)
	}
	assert.False(t, strings.Contains(va.LogTail(1<<20), cards[fd.refused]), "a card number reached the log")

	// The command line: a job of one card, followed to its end, its mapping written.
	mapping := filepath.Join(t.TempDir(), "mapping.csv")
	out, errOut, err := run(t, "export", "run", "--database-url", a.db, "--kek-uri", kekURI, "--tenant", a.tenantID,
		"--destination", dest, "--business-key-prefix", "r-3", "--wait", "--mapping", mapping)
	require.NoError(t, err, "%s", errOut)
	assert.Contains(t, errOut, "finished: 1 of 1 exported, 0 failed")
	b, err := os.ReadFile(mapping)
	require.NoError(t, err)
	var tokenID string
	require.NoError(t, a.pool.QueryRow(context.Background(), `SELECT id::text FROM tokens WHERE business_key = 'r-3'`).Scan(&tokenID))
	assert.Equal(t, "token_id,business_key,remote_id,status,last_error\n"+tokenID+",r-3,remote_r-3,succeeded,\n", string(b))
	assert.Equal(t, strings.TrimSpace(out), strings.TrimSpace(strings.Split(out, "\n")[0]), "stdout is the job id alone")
}
