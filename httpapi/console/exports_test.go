package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/exporter"
	"github.com/cardvault/cardvault/vault"
)

// exportThroughAPI tokenizes two cards, allow-lists destURL and runs an
// export of both to it through the API and a worker until it ends; it
// returns the job's id.
func (w *world) exportThroughAPI(destURL string) string {
	w.t.Helper()
	w.tokenize("pm_console_exp_1", visaNumber)
	w.tokenize("pm_console_exp_2", "5555555555554444")
	status, body := w.api(http.MethodPost, "/forwarding/destinations", w.key, "application/json",
		`{"url":"`+destURL+`","preset":"stripe_own_vault"}`)
	require.Equal(w.t, http.StatusCreated, status, body)
	var dest struct{ ID string }
	require.NoError(w.t, json.Unmarshal([]byte(body), &dest))
	status, body = w.api(http.MethodPost, "/tokens/exports", w.key, "application/json",
		`{"destination":"`+dest.ID+`","headers":[{"name":"X-API-Key","value":"`+destinationSecret+`"}],"rate_limit":1000}`)
	require.Equal(w.t, http.StatusAccepted, status, body)
	var job struct{ ID string }
	require.NoError(w.t, json.Unmarshal([]byte(body), &job))
	r, err := exporter.New(exporter.Config{Service: w.svc, Owner: "console-test", Poll: 10 * time.Millisecond})
	require.NoError(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body = w.api(http.MethodGet, "/tokens/exports/"+job.ID, w.key, "", "")
		if !strings.Contains(body, `"status":"running"`) {
			return job.ID
		}
		require.True(w.t, time.Now().Before(deadline), "the export did not end: %s", body)
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExportsViewListsJobsAndTheirMapping(t *testing.T) {
	w, destURL := forwardingWorld(t)
	jobID := w.exportThroughAPI(destURL)
	b := w.browser()
	b.signIn(w.keyWith(vault.ScopeExportsRead))
	assert.Contains(t, b.get("/console/").body, `data-nav="exports"`)

	list := b.get("/console/exports")
	require.Equal(t, http.StatusOK, list.status, list.body)
	assert.Contains(t, list.body, "/console/exports/"+jobID)
	assert.Regexp(t, `<td class="num successes">2</td>`, list.body)

	p := b.get("/console/exports/" + jobID)
	require.Equal(t, http.StatusOK, p.status, p.body)
	for _, want := range []string{`<dd class="total">2</dd>`, `<dd class="successes">2</dd>`, `<dd class="failures">0</dd>`,
		"pm_console_exp_1", "pm_console_exp_2", "tok_remote", "finished"} {
		assert.Contains(t, p.body, want)
	}
	progress := b.get("/console/exports/" + jobID + "/progress")
	assert.Contains(t, progress.body, `"status":"finished"`)
	for _, pg := range []string{list.body, p.body} {
		assert.NotContains(t, pg, destinationSecret, "no header value")
		assert.NotContains(t, pg, visaNumber)
		assertNoCardNumber(t, stripTags(pg))
	}
}

func TestExportsViewNeedsExportsRead(t *testing.T) {
	w := newWorld(t)
	for _, tt := range []struct {
		name   string
		scopes []vault.Scope
		status int
	}{
		{"exports:read", []vault.Scope{vault.ScopeExportsRead}, http.StatusOK},
		{"exports:write implies it", []vault.Scope{vault.ScopeExportsWrite}, http.StatusOK},
		{"imports:read and forwarding:read do not", []vault.Scope{vault.ScopeImportsRead, vault.ScopeForwardingRead}, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := w.browser()
			b.signIn(w.keyWith(tt.scopes...))
			assert.Equal(t, tt.status == http.StatusOK, strings.Contains(b.get("/console/").body, `data-nav="exports"`), "nav entry")
			assert.Equal(t, tt.status, b.get("/console/exports").status)
		})
	}
}

func TestBrowserExportsViewShowsTheJobAndItsCounts(t *testing.T) {
	w, destURL := forwardingWorld(t)
	jobID := w.exportThroughAPI(destURL)
	b := w.openTab(t)
	b.signIn(w.keyWith(vault.ScopeExportsRead))
	require.Equal(t, http.StatusOK, b.click(`a[data-nav="exports"]`))
	b.waitText("h1", "Exports")
	assert.Equal(t, "2", b.text("table.exports td.successes"))
	b.screenshot("exports")
	require.Equal(t, http.StatusOK, b.click(`table.exports a`))
	b.waitText("h1", "Export "+jobID[:8])
	assert.Equal(t, "2", b.text("dd.successes"))
	assert.Equal(t, "0", b.text("dd.pending"))
	assert.Equal(t, "finished", b.text(".progress .status"))
	remote := eval[[]string](b, `[...document.querySelectorAll("table.ledger tbody tr td:last-child code")].map(c => c.textContent)`)
	assert.Equal(t, []string{"tok_remote", "tok_remote"}, remote)
	b.screenshot("export")
}
