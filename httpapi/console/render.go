package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed assets
var assetFiles embed.FS

// assetHandler serves the embedded stylesheet, script and icon under
// /console/assets/.
func assetHandler() http.Handler {
	sub, err := fs.Sub(assetFiles, "assets")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return http.StripPrefix(Path+"/assets/", http.FileServerFS(sub))
}

// pages holds each page's template: the layout with the page's content.
type pages map[string]*template.Template

// parsePages parses every page of templates/ (but the layout) with the
// layout. A template that does not parse is a bug of the build: it panics.
func parsePages() pages {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/chart.html"))
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := pages{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "chart" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFiles, n))
	}
	return out
}

// view is what the layout renders around a page.
type view struct {
	Title  string
	Nav    []navItem
	Active string
	// Session is the signed-in key, nil on the sign-in page.
	Session *vault.ConsoleSession
	// CSRF is the token every form of the page carries.
	CSRF string
	// Notice is a message about the last action.
	Notice string
	Data   any
}

// navItem is an entry of the navigation: only those the key may open.
type navItem struct {
	Key, Name, Href string
}

// nav returns the navigation entries q's key may open.
func (c *Console) nav(q *request) []navItem {
	a := q.actor()
	items := []navItem{{"overview", "Overview", Path + "/"}}
	add := func(scope vault.Scope, key, name, href string) {
		if a.Can(scope) {
			items = append(items, navItem{key, name, href})
		}
	}
	add(vault.ScopeKeysManage, "keys", "Keys", Path+"/keys")
	add(vault.ScopeImportsRead, "imports", "Imports", Path+"/imports")
	add(vault.ScopeForwardingRead, "forwarding", "Forwarding", Path+"/forwarding")
	add(vault.ScopeExportsRead, "exports", "Exports", Path+"/exports")
	add(vault.ScopeAuditRead, "audit", "Audit", Path+"/audit")
	add(vault.ScopeWebhooksManage, "webhooks", "Webhooks", Path+"/webhooks")
	add(vault.ScopeKeysManage, "api-keys", "API keys", Path+"/api-keys")
	return items
}

// show renders page for q's session with status 200.
func (c *Console) show(q *request, page, title string, data any) error {
	c.render(q, http.StatusOK, page, c.signedInView(q, page, title, data))
	return nil
}

// signedInView is the layout's data for a signed-in page.
func (c *Console) signedInView(q *request, active, title string, data any) view {
	sess := q.sess
	return view{Title: title, Nav: c.nav(q), Active: active, Session: &sess, CSRF: sess.CSRFToken,
		Notice: notices[q.r.URL.Query().Get("done")], Data: data}
}

// notices are the messages an action's redirect may ask for (?done=…):
// fixed texts, so that a link cannot put words on a console page.
var notices = map[string]string{
	"rotated":   "The data key was rotated: a new key is primary. Re-encrypt the tokens still under older keys, then retire those keys.",
	"retired":   "The key was retired: it no longer decrypts anything.",
	"destroyed": "The key's material was destroyed for good.",
	"revoked":   "The API key was revoked.",
}

// render writes page with v, buffered so that a template failure is a
// clean 500 rather than half a page.
func (c *Console) render(q *request, status int, page string, v view) {
	t, ok := c.pages[page]
	if !ok {
		c.fail(q, vault.Internal(fmt.Errorf("console: no page %q", page)))
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout.html", v); err != nil {
		c.log.Error("console: rendering", "page", page, "error", card.MaskPANs(err.Error()))
		http.Error(q.w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	q.w.WriteHeader(status)
	_, _ = q.w.Write(b.Bytes())
}

// statuses maps domain error kinds to the console's HTTP statuses.
var statuses = map[vault.Kind]int{
	vault.KindBadRequest:      http.StatusBadRequest,
	vault.KindInvalid:         http.StatusUnprocessableEntity,
	vault.KindUnauthenticated: http.StatusUnauthorized,
	vault.KindForbidden:       http.StatusForbidden,
	vault.KindNotFound:        http.StatusNotFound,
	vault.KindConflict:        http.StatusConflict,
	vault.KindTooLarge:        http.StatusRequestEntityTooLarge,
	vault.KindRateLimited:     http.StatusTooManyRequests,
	vault.KindUnavailable:     http.StatusServiceUnavailable,
	vault.KindMisconfigured:   http.StatusServiceUnavailable,
}

// errorView is the error page's data.
type errorView struct {
	Status  int
	Code    string
	Message string
}

// fail renders err as an error page (JSON for a poll), with its status;
// a server-side failure is logged with the request id, never shown.
func (c *Console) fail(q *request, err error) {
	e := vault.AsError(err)
	status, ok := statuses[e.Kind]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		id, _ := requestOf(q.r)
		c.log.Error("console request failed", "request_id", id, "path", q.r.URL.Path, "code", e.Code,
			"error", card.MaskPANs(err.Error()))
	}
	if strings.HasSuffix(q.r.URL.Path, "/progress") {
		writeJSON(q.w, status, map[string]string{"code": e.Code})
		return
	}
	ev := errorView{Status: status, Code: e.Code, Message: e.Message}
	v := view{Title: http.StatusText(status), Data: ev}
	if q.sess.Actor.APIKeyID != uuid.Nil {
		v = c.signedInView(q, "", http.StatusText(status), ev)
	}
	c.render(q, status, "error", v)
}

// writeJSON writes v as a JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// retryAfter is wait in whole seconds, at least 1.
func retryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"whenPtr": whenPtr,
	"day":     func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"count":   groupThousands,
	"deref":   func(n *int64) int64 { return *n },
	"short":   func(id uuid.UUID) string { return id.String()[:8] },
	"idOrDash": func(id uuid.UUID) string {
		if id == uuid.Nil {
			return "—"
		}
		return id.String()
	},
	"detail": func(d map[string]any) string {
		if len(d) == 0 {
			return ""
		}
		b, _ := json.Marshal(d)
		return card.MaskPANs(string(b))
	},
	"has": func(scopes []vault.Scope, s string) bool {
		for _, sc := range scopes {
			if string(sc) == s {
				return true
			}
		}
		return false
	},
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// groupThousands writes n with thin spaces between groups of three digits.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
