package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// tokenizeCards stores n cards made from the public test cards.
func (w *world) tokenizeCards(n int) {
	w.t.Helper()
	cards := vaulttest.Cards(w.t)
	for i := range n {
		w.tokenize(fmt.Sprintf("bk-browser-%d", i), cards[i%len(cards)].Number)
	}
}

func TestBrowserSignInAndSeeTheKeyChart(t *testing.T) {
	w := newWorld(t)
	w.tokenizeCards(12)
	b := w.openTab(t)
	require.Equal(t, http.StatusOK, b.open("/console/"), "the overview sends a signed-out browser to sign in")
	b.waitText("h1", "Sign in")
	b.screenshot("login")
	b.signIn(w.key)
	assert.Equal(t, "12", b.text(".tokens-held"))
	assert.Equal(t, 14, eval[int](b, `document.querySelectorAll(".tokens-chart rect").length`), "one column per day")
	days := eval[[]string](b, `[...document.querySelectorAll(".tokens-chart rect title")].map(t => t.textContent)`)
	assert.Equal(t, time.Now().UTC().Format("2006-01-02")+": 12", days[len(days)-1], "today's column")
	b.screenshot("overview")

	require.Equal(t, http.StatusOK, b.click(`a[data-nav="keys"]`))
	b.waitText("h1", "Keys")
	bars := eval[[]string](b, `[...document.querySelectorAll(".key-chart rect title")].map(t => t.textContent)`)
	require.Len(t, bars, 1, "one bar per key version")
	assert.Regexp(t, `^key \d+ \(primary\): 12 tokens$`, bars[0])
	assert.True(t, b.has("#rotate"))
	b.screenshot("keys")

	_, err := w.svc.ChainAudit(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, b.click(`a[data-nav="audit"]`))
	require.Equal(t, http.StatusOK, b.click("#verify"))
	b.waitText(".verify-result", "The audit chain is whole")
	require.Equal(t, http.StatusOK, b.open("/console/audit?action=token.create"))
	actions := eval[[]string](b, `[...document.querySelectorAll("code.action")].map(c => c.textContent)`)
	assert.Len(t, actions, 12)
	for _, a := range actions {
		assert.Equal(t, string(vault.ActionTokenCreate), a)
	}
	b.screenshot("audit")
}

func TestBrowserRotateAndWatchReencryption(t *testing.T) {
	w := newWorld(t)
	w.tokenizeCards(40)
	b := w.openTab(t)
	b.signIn(w.key)
	require.Equal(t, http.StatusOK, b.open("/console/keys"))
	oldKey := eval[string](b, `document.querySelector("tr.state-primary td code").textContent`)

	require.Equal(t, http.StatusOK, b.click("#rotate"))
	b.waitText("h1", "Rotate data key "+oldKey+"?")
	assert.Equal(t, "Rotate key "+oldKey, b.text("#confirm"), "the confirmation names the key")
	b.screenshot("rotate-confirm")
	require.Equal(t, http.StatusOK, b.click("#confirm"))
	b.waitText(".notice", "The data key was rotated")
	bars := eval[[]string](b, `[...document.querySelectorAll(".key-chart rect title")].map(t => t.textContent)`)
	assert.Len(t, bars, 2, "the chart shows both versions")

	require.Equal(t, http.StatusOK, b.click("#reencrypt"))
	b.waitText("#confirm", "Re-encrypt under key")
	require.Equal(t, http.StatusOK, b.click("#confirm"))
	b.waitText("h1", "Re-encryption")
	assert.Equal(t, "0 %", b.text(".percent"))
	assert.Equal(t, "pending", b.text(".progress .status"))
	eval[bool](b, `window.cardvaultSamePage = true`)

	jobID, err := uuid.Parse(strings.TrimPrefix(eval[string](b, `location.pathname`), "/console/keys/jobs/"))
	require.NoError(t, err)
	ran, err := w.svc.RunOneKeyJob(context.Background(), "console-test", jobID)
	require.NoError(t, err)
	require.True(t, ran)

	b.waitText(".percent", "100 %")
	b.waitText(".progress .status", "finished")
	assert.Equal(t, "40", b.text(`[data-field="done"]`))
	assert.True(t, eval[bool](b, `window.cardvaultSamePage === true`), "the page followed the job without reloading")
	b.screenshot("reencrypt")

	require.Equal(t, http.StatusOK, b.open("/console/keys"))
	assert.Equal(t, "0", eval[string](b, `document.querySelector("tr[data-key='`+oldKey+`'] td.num").textContent`),
		"the old key protects no token any more")
}

func TestBrowserImportFromTheSimulator(t *testing.T) {
	w := newWorld(t)
	const stripeKey = "sk_test_cardvaultConsoleTests0001"
	sim := stripesim.New(stripesim.Config{APIKeys: []string{stripeKey}})
	sim.Seed(stripesim.SeedSpec{Customers: 20, PaymentMethods: 150, LinkEvery: 25, Seed: 7})
	sim.SetFaults(stripesim.Faults{Delay: 25 * time.Millisecond}) // a Stripe slow enough to watch
	stripe := httptest.NewServer(sim)
	t.Cleanup(stripe.Close)
	w.runImporter(t, stripe.URL)

	b := w.openTab(t)
	b.signIn(w.key)
	require.Equal(t, http.StatusOK, b.click(`a[data-nav="imports"]`))
	b.typeInto("#stripe_api_key", stripeKey)
	require.Equal(t, http.StatusOK, b.click("#start-import"))
	b.waitText("h1", "Import")
	assert.NotEqual(t, "finished", b.text(".progress .status"), "the job page opens while the import runs")
	b.waitText(".progress .status", "finished")
	b.waitFor(`document.readyState === "complete" && document.querySelector(".progress").dataset.ended === "true" &&
		document.querySelector(".counts .successes").textContent === "144"`) // the page reloads once the job has ended
	assert.Equal(t, "100 %", b.text(".percent"))
	assert.Equal(t, "150", b.text(`[data-field="total"]`))
	b.screenshot("import")

	require.Equal(t, http.StatusOK, b.open(eval[string](b, `location.pathname`)+"?status=skipped"))
	rows := eval[[]string](b, `[...document.querySelectorAll(".ledger tbody tr td:nth-child(4)")].map(c => c.textContent)`)
	require.Len(t, rows, 6, "the ledger filtered by status")
	for _, s := range rows {
		assert.Equal(t, "skipped", s)
	}
}

// runImporter runs an import worker against the simulated Stripe at
// stripeURL until the test ends.
func (w *world) runImporter(t *testing.T, stripeURL string) {
	t.Helper()
	r, err := importer.New(importer.Config{Service: w.svc, Owner: "console-test", PublicURL: w.srv.URL,
		StripeAPIBase: stripeURL, Rate: -1, Concurrency: 8, RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond,
		Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestBrowserRevokeTheSignedInKeyAndBeSignedOut(t *testing.T) {
	w := newWorld(t)
	w.keyWith(vault.ScopeAuditRead) // a second key in the list
	b := w.openTab(t)
	b.signIn(w.key)
	require.Equal(t, http.StatusOK, b.click(`a[data-nav="api-keys"]`))
	b.waitText("h1", "API keys")
	b.screenshot("api-keys")
	prefix := eval[string](b, `[...document.querySelectorAll("tr[data-key]")].find(r => r.textContent.includes("(you)")).dataset.key`)
	require.Equal(t, http.StatusOK, b.click(`tr[data-key="`+prefix+`"] a.revoke`))
	b.waitText("h1", "Revoke API key "+prefix+"?")
	assert.Contains(t, b.text(".confirm p"), "you will be signed out")
	require.Equal(t, http.StatusOK, b.click("#confirm"))
	b.waitText("h1", "Sign in")
	assert.Contains(t, b.text(".notice"), "was revoked, and you were signed out")
	require.Equal(t, http.StatusOK, b.open("/console/keys"))
	b.waitText("h1", "Sign in")
}

func TestBrowserPostWithoutCSRFTokenIsRefused(t *testing.T) {
	w := newWorld(t)
	b := w.openTab(t)
	b.signIn(w.key)
	assert.Equal(t, http.StatusForbidden, b.post("/console/keys/rotate", nil))
	assert.Equal(t, http.StatusForbidden, b.post("/console/keys/rotate", map[string]string{"csrf": "forged"}))
	csrf := eval[string](b, `document.querySelector("input[name=csrf]").value`)
	assert.Equal(t, 0, b.post("/console/keys/rotate", map[string]string{"csrf": csrf}),
		"with the token the post is taken (fetch sees the redirect as an opaque answer)")
	assert.Len(t, w.auditRows(vault.ActionKeyAdd, w.keyID(w.key)), 1, "only the post with the token rotated")
}

func TestBrowserKeyWithoutKeysManage(t *testing.T) {
	w := newWorld(t)
	limited := w.keyWith(vault.ScopeAuditRead, vault.ScopeImportsRead, vault.ScopeTokensRead)
	b := w.openTab(t)
	b.signIn(limited)
	assert.False(t, b.has(`a[data-nav="keys"]`), "no keys view in the navigation")
	assert.False(t, b.has(`a[data-nav="forwarding"]`), "no forwarding view without forwarding:read")
	assert.False(t, b.has("#rotate"))
	require.Equal(t, http.StatusForbidden, b.open("/console/keys"))
	assert.Contains(t, b.text("[role=alert]"), "lacks the keys:manage scope")
	assert.False(t, b.has("#rotate"), "no rotate button on the refusal either")
	require.Equal(t, http.StatusOK, b.open("/console/"))
	csrf := eval[string](b, `document.querySelector("input[name=csrf]").value`)
	assert.Equal(t, http.StatusForbidden, b.post("/console/keys/rotate", map[string]string{"csrf": csrf}),
		"posting anyway, with a valid token, is refused")
	assert.Len(t, w.auditRows(vault.ActionAuthDenied, w.keyID(limited)), 2, "both refusals are audited")
	assert.Empty(t, w.auditRows(vault.ActionKeyAdd, w.keyID(limited)))
	b.screenshot("limited-key")
}

func TestBrowserForwardingViewShowsTheDestination(t *testing.T) {
	w, destURL := forwardingWorld(t)
	destID, fwdID := w.forwardThroughAPI(destURL)
	b := w.openTab(t)
	b.signIn(w.keyWith(vault.ScopeTokensForward))
	require.Equal(t, http.StatusOK, b.click(`a[data-nav="forwarding"]`))
	b.waitText("h1", "Forwarding")
	assert.Equal(t, destURL, b.text("code.destination-url"))
	assert.Equal(t, fwdID, b.text("table.forwards tbody td code"))
	bars := eval[[]string](b, `[...document.querySelectorAll(".latency-chart rect title")].map(t => t.textContent)`)
	require.Len(t, bars, 1, "one bar per destination with forwards")
	assert.Regexp(t, "^"+destID+`: \d+\.\d ms · 1 forward$`, bars[0])
	b.screenshot("forwarding")
}
