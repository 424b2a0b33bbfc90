package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func TestEveryAnswerCarriesTheSecurityHeaders(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	for _, path := range []string{"/console/login", "/console/", "/console/assets/console.css", "/console/assets/console.js", "/console/nowhere"} {
		p := b.get(path)
		assert.Equal(t, "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
			p.header.Get("Content-Security-Policy"), path)
		assert.Equal(t, "no-store", p.header.Get("Cache-Control"), path)
		assert.Equal(t, "no-referrer", p.header.Get("Referrer-Policy"), path)
		assert.Equal(t, "DENY", p.header.Get("X-Frame-Options"), path)
		assert.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"), path)
	}
}

func TestPagesHaveNoInlineScriptOrStyle(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	b.signIn(w.key)
	for _, path := range consolePages {
		p := b.get(path)
		require.Equal(t, http.StatusOK, p.status, "%s: %s", path, p.body)
		for _, bad := range []string{"<script>", "style=", "<style", "onclick", "onload", "javascript:"} {
			assert.NotContains(t, p.body, bad, path)
		}
	}
}

// consolePages are the views an all-scope key opens.
var consolePages = []string{"/console/", "/console/keys", "/console/imports", "/console/audit", "/console/webhooks", "/console/api-keys", "/console/forwarding"}

func TestSessionCookie(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	login := b.get("/console/login")
	res := b.post("/console/login", url.Values{"csrf": {b.csrf(login)}, "api_key": {w.key}})
	require.Equal(t, http.StatusSeeOther, res.status)
	var set string
	for _, c := range res.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "__Host-cardvault-console=") {
			set = c
		}
	}
	require.NotEmpty(t, set)
	for _, attr := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800"} {
		assert.Contains(t, set, attr)
	}
	assert.Regexp(t, `^__Host-cardvault-console=cvs_[A-Za-z0-9_-]{43};`, set)
	assert.NotContains(t, set, "Domain=")
}

func TestSignIn(t *testing.T) {
	tests := []struct {
		name   string
		form   func(csrf string) url.Values
		status int
	}{
		{"without the form's CSRF token", func(string) url.Values { return url.Values{"api_key": {"x"}} }, http.StatusForbidden},
		{"with another CSRF token", func(string) url.Values { return url.Values{"csrf": {"forged"}, "api_key": {"x"}} }, http.StatusForbidden},
		{"with a wrong key", func(c string) url.Values {
			return url.Values{"csrf": {c}, "api_key": {"cvk_0000000000000000_" + strings.Repeat("A", 43)}}
		}, http.StatusUnauthorized},
		{"with no key", func(c string) url.Values { return url.Values{"csrf": {c}} }, http.StatusUnauthorized},
	}
	w := newWorld(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := w.browser()
			login := b.get("/console/login")
			res := b.post("/console/login", tt.form(b.csrf(login)))
			assert.Equal(t, tt.status, res.status)
			assert.NotContains(t, res.header.Values("Set-Cookie"), "__Host-cardvault-console=cvs_")
			assert.Equal(t, http.StatusSeeOther, b.get("/console/").status, "still signed out")
		})
	}
}

func TestSignInSharesTheFailedAuthenticationBudget(t *testing.T) {
	w := newWorld(t, httpapi.WithLimits(httpapi.Limits{AuthFailures: 2}))
	b := w.browser()
	try := func(key string) int {
		login := b.get("/console/login")
		return b.post("/console/login", url.Values{"csrf": {b.csrf(login)}, "api_key": {key}}).status
	}
	assert.Equal(t, http.StatusUnauthorized, try("wrong"))
	assert.Equal(t, http.StatusUnauthorized, try("wrong"))
	assert.Equal(t, http.StatusTooManyRequests, try(w.key), "the address has spent its budget, even with a good key")
	res := w.do(t, "/tokens", "wrong")
	assert.Equal(t, http.StatusTooManyRequests, res, "the API shares the budget")
}

// do calls the API at path with key and returns the status.
func (w *world) do(t *testing.T, path, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, w.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	res, err := w.srv.Client().Do(req)
	require.NoError(t, err)
	res.Body.Close()
	return res.StatusCode
}

func TestFormsWithoutTheCSRFTokenAreRefused(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	csrf := b.signIn(w.key)
	self := w.keyID(w.key)
	posts := []string{"/console/logout", "/console/keys/rotate", "/console/keys/reencrypt", "/console/keys/retire",
		"/console/keys/destroy", "/console/imports", "/console/audit/verify", "/console/api-keys",
		"/console/api-keys/" + self.String() + "/revoke"}
	for _, path := range posts {
		for name, form := range map[string]url.Values{"none": {}, "forged": {"csrf": {csrf + "x"}}, "empty": {"csrf": {""}}} {
			res := b.post(path, form)
			assert.Equal(t, http.StatusForbidden, res.status, "%s with %s token", path, name)
			assert.Contains(t, res.body, vault.CodeCSRFTokenInvalid, path)
		}
	}
	assert.Empty(t, w.auditRows(vault.ActionKeyAdd, self), "nothing was rotated")
	assert.Empty(t, w.auditRows(vault.ActionAPIKeyRevoke, self), "nothing was revoked")
	assert.Equal(t, http.StatusOK, b.get("/console/").status, "still signed in")
}

func TestFormsWithoutASessionAreRefused(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	assert.Equal(t, http.StatusForbidden, b.post("/console/keys/rotate", url.Values{"csrf": {"x"}}).status)
	res := b.get("/console/keys")
	assert.Equal(t, http.StatusSeeOther, res.status)
	assert.Equal(t, "/console/login", res.header.Get("Location"))
	res = b.get("/console/keys/jobs/00000000-0000-0000-0000-000000000000/progress")
	assert.Equal(t, http.StatusUnauthorized, res.status, "a poll is told to sign in")
}

func TestScopesDecideWhatAKeySeesAndDoes(t *testing.T) {
	w := newWorld(t)
	limited := w.keyWith(vault.ScopeAuditRead, vault.ScopeImportsRead)
	b := w.browser()
	csrf := b.signIn(limited)
	ov := b.get("/console/")
	assert.Contains(t, ov.body, `data-nav="audit"`)
	assert.Contains(t, ov.body, `data-nav="imports"`)
	for _, hidden := range []string{`data-nav="keys"`, `data-nav="api-keys"`, `data-nav="webhooks"`, `id="rotate"`, "Keys overdue", "tokens held"} {
		assert.NotContains(t, ov.body, hidden)
	}
	assert.NotContains(t, b.get("/console/imports").body, `id="start-import"`, "no imports:write")

	tests := []struct {
		method, path string
		scope        vault.Scope
	}{
		{http.MethodGet, "/console/keys", vault.ScopeKeysManage},
		{http.MethodGet, "/console/keys/confirm?action=rotate", vault.ScopeKeysManage},
		{http.MethodPost, "/console/keys/rotate", vault.ScopeKeysManage},
		{http.MethodPost, "/console/keys/reencrypt", vault.ScopeKeysManage},
		{http.MethodGet, "/console/api-keys", vault.ScopeKeysManage},
		{http.MethodPost, "/console/api-keys", vault.ScopeKeysManage},
		{http.MethodGet, "/console/webhooks", vault.ScopeWebhooksManage},
		{http.MethodPost, "/console/imports", vault.ScopeImportsWrite},
	}
	id := w.keyID(limited)
	for _, tt := range tests {
		var res page
		if tt.method == http.MethodPost {
			res = b.post(tt.path, url.Values{"csrf": {csrf}, "stripe_api_key": {"sk_test_0000000000000000"}})
		} else {
			res = b.get(tt.path)
		}
		assert.Equal(t, http.StatusForbidden, res.status, "%s %s", tt.method, tt.path)
		assert.Contains(t, res.body, "lacks the "+string(tt.scope)+" scope", tt.path)
	}
	denied := w.auditRows(vault.ActionAuthDenied, id)
	require.Len(t, denied, len(tests), "every refusal is audited as the key")
	assert.Equal(t, vault.OutcomeDenied, denied[0].Outcome)
	assert.Empty(t, w.auditRows(vault.ActionKeyAdd, id))
}

func TestConsoleActionsAreAuditedAsTheirAPITwins(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	csrf := b.signIn(w.key)
	id := w.keyID(w.key)
	res := b.post("/console/keys/rotate", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, res.status, res.body)
	assert.Equal(t, "/console/keys?done=rotated", res.header.Get("Location"))
	for _, action := range []vault.Action{vault.ActionConsoleSignIn, vault.ActionKeyAdd, vault.ActionKeyPromote} {
		rows := w.auditRows(action, id)
		require.Len(t, rows, 1, action)
		assert.Equal(t, "127.0.0.1", rows[0].ClientAddr, action)
		assert.Regexp(t, `^req_[0-9a-f]{24}$`, rows[0].RequestID, action)
	}
	res = b.post("/console/logout", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, res.status)
	assert.Len(t, w.auditRows(vault.ActionConsoleSignOut, id), 1)
	assert.Equal(t, http.StatusSeeOther, b.get("/console/").status, "signed out")
}

func TestKeyActionsNeedAClientCertificateWhenTheAPIDoes(t *testing.T) {
	w := newWorld(t, httpapi.WithTLS(httpapi.TLSOptions{ClientCertForKeys: true}))
	b := w.browser()
	csrf := b.signIn(w.key)
	assert.Equal(t, http.StatusForbidden, b.get("/console/keys").status)
	res := b.post("/console/keys/rotate", url.Values{"csrf": {csrf}})
	assert.Equal(t, http.StatusForbidden, res.status)
	assert.Contains(t, res.body, vault.CodeClientCertificateRequired)
	assert.Equal(t, http.StatusOK, b.get("/console/audit").status, "other views need none")
}

func TestNoCardDataIsEverRendered(t *testing.T) {
	w := newWorld(t)
	cards := vaulttest.Cards(t)
	for i, c := range cards[:5] {
		w.tokenize("bk-console-"+string(rune('a'+i)), c.Number)
	}
	b := w.browser()
	b.signIn(w.key)
	for _, path := range append(consolePages, "/console/audit?action=token.create") {
		body := b.get(path).body
		for _, c := range cards[:5] {
			assert.NotContains(t, body, c.Number, path)
			assert.NotContains(t, body, c.Number[len(c.Number)-10:], path, "not even part of the number")
		}
		assert.NotContains(t, body, `"123"`, path)
	}
}

func TestRevokingTheSignedInKeySignsOut(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	csrf := b.signIn(w.key)
	self := w.keyID(w.key)
	confirm := b.get("/console/api-keys/" + self.String() + "/revoke")
	require.Equal(t, http.StatusOK, confirm.status)
	assert.Contains(t, confirm.body, "you will be signed out")
	res := b.post("/console/api-keys/"+self.String()+"/revoke", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, res.status, res.body)
	assert.Equal(t, "/console/login?revoked=1", res.header.Get("Location"))
	assert.Equal(t, http.StatusSeeOther, b.get("/console/").status)
	_, err := w.svc.Authenticate(context.Background(), w.key, "req", "127.0.0.1")
	assert.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
	assert.Len(t, w.auditRows(vault.ActionAPIKeyRevoke, self), 1)
}

func TestCreatingAKeyShowsItsSecretOnce(t *testing.T) {
	w := newWorld(t)
	b := w.browser()
	csrf := b.signIn(w.key)
	res := b.post("/console/api-keys", url.Values{"csrf": {csrf}, "description": {"reporting"},
		"scope": {string(vault.ScopeAuditRead)}})
	require.Equal(t, http.StatusCreated, res.status, res.body)
	m := secretShown.FindStringSubmatch(res.body)
	require.NotNil(t, m)
	a := vaulttest.Actor(t, w.svc, m[1])
	assert.Equal(t, []vault.Scope{vault.ScopeAuditRead}, a.Scopes)
	assert.NotContains(t, b.get("/console/api-keys").body, m[1], "the secret is shown only once")
}

var secretShown = regexp.MustCompile(`id="new-secret" class="secret">(cvk_[^<]+)<`)
