package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// The cookies. __Host- makes browsers refuse them unless Secure, on the
// whole host (Path=/) and without a Domain.
const (
	sessionCookie = "__Host-cardvault-console"
	// loginCookie carries the sign-in form's CSRF token (double submit):
	// there is no session yet to hold it.
	loginCookie = "__Host-cardvault-console-login"
)

// maxForm bounds the body of a console form.
const maxForm = 16 << 10

// request is one console request: the exchange, and its signed-in session
// when it has one.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	sess vault.ConsoleSession
}

func (q *request) ctx() context.Context { return q.r.Context() }

// actor is the signed-in API key, as an actor of this request.
func (q *request) actor() vault.Actor { return q.sess.Actor }

// handler serves a signed-in request; an error is rendered as an error page.
type handler func(q *request) error

// page wraps a view: a live session (else the sign-in page), then scope
// (else 403, audited).
func (c *Console) page(scope vault.Scope, h handler) http.HandlerFunc {
	return c.signedIn(true, scope, h)
}

// action wraps a form post: a live session, its CSRF token (else 403), then
// scope (else 403, audited).
func (c *Console) action(scope vault.Scope, h handler) http.HandlerFunc {
	return c.signedIn(true, scope, func(q *request) error {
		if !c.checkCSRF(q) {
			return vault.Errorf(vault.KindForbidden, vault.CodeCSRFTokenInvalid,
				"this form has expired or did not come from the console; reload the page and try again")
		}
		return h(q)
	})
}

// poll wraps a JSON progress endpoint: a live session that the poll does
// not keep alive (it is no activity of the operator), then scope.
func (c *Console) poll(scope vault.Scope, h handler) http.HandlerFunc {
	return c.signedIn(false, scope, h)
}

// signedIn resolves the session cookie and serves h, or sends the browser
// to sign in (a poll answers 401).
func (c *Console) signedIn(touch bool, scope vault.Scope, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := &request{w: w, r: r}
		sess, err := c.session(r, touch)
		if err != nil {
			c.notSignedIn(q, touch, err)
			return
		}
		q.sess = sess
		if scope != "" {
			if err := c.svc.Require(r.Context(), q.actor(), scope); err != nil {
				c.fail(q, err)
				return
			}
		}
		if err := h(q); err != nil {
			c.fail(q, err)
		}
	}
}

// session returns the live session of the request's cookie.
func (c *Console) session(r *http.Request, touch bool) (vault.ConsoleSession, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return vault.ConsoleSession{}, vault.Errorf(vault.KindUnauthenticated, vault.CodeSessionInvalid, "sign in to the console")
	}
	id, addr := requestOf(r)
	return c.svc.ConsoleSession(r.Context(), ck.Value, id, addr, touch)
}

// notSignedIn answers a request without a live session: the sign-in page
// for a page view, 401 for a poll, 403 for a form post (which must not be
// replayed after signing in), or the error when the database failed.
func (c *Console) notSignedIn(q *request, page bool, err error) {
	switch {
	case vault.ErrorKind(err) != vault.KindUnauthenticated:
		c.fail(q, err)
	case !page:
		q.w.WriteHeader(http.StatusUnauthorized)
	case q.r.Method == http.MethodPost:
		c.fail(q, vault.Errorf(vault.KindForbidden, vault.CodeSessionInvalid, "your console session has ended; sign in again"))
	default:
		clearCookie(q.w, sessionCookie)
		to := Path + "/login"
		if _, err := q.r.Cookie(sessionCookie); err == nil {
			to += "?ended=1"
		}
		http.Redirect(q.w, q.r, to, http.StatusSeeOther)
	}
}

// checkCSRF parses the form and reports whether it carries the session's
// CSRF token.
func (c *Console) checkCSRF(q *request) bool {
	q.r.Body = http.MaxBytesReader(q.w, q.r.Body, maxForm)
	if err := q.r.ParseForm(); err != nil {
		return false
	}
	return sameToken(q.r.PostForm.Get("csrf"), q.sess.CSRFToken)
}

// sameToken compares two tokens in constant time; an empty one matches
// nothing.
func sameToken(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// loginView is the sign-in page's data.
type loginView struct {
	Ended   bool
	Revoked bool
	Failed  bool
}

// loginPage serves the sign-in form with a fresh CSRF token in a cookie and
// in the form.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	lv := loginView{Ended: r.URL.Query().Get("ended") != "", Revoked: r.URL.Query().Get("revoked") != ""}
	c.renderLogin(&request{w: w, r: r}, http.StatusOK, lv)
}

func (c *Console) renderLogin(q *request, status int, lv loginView) {
	token := randomToken()
	setCookie(q.w, loginCookie, token, time.Hour)
	c.render(q, status, "login", view{Title: "Sign in", CSRF: token, Data: lv})
}

// signIn checks the sign-in form's CSRF token and the address's budget,
// authenticates the API key (a failure is audited by the vault), starts a
// session and sends the browser to the overview.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	q := &request{w: w, r: r}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	ck, err := r.Cookie(loginCookie)
	if err != nil || r.ParseForm() != nil || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
		c.fail(q, vault.Errorf(vault.KindForbidden, vault.CodeCSRFTokenInvalid, "this sign-in form has expired; reload the page"))
		return
	}
	id, addr := requestOf(r)
	if t := c.opts.Throttle; t != nil {
		if wait, ok := t.Allow(addr); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			c.fail(q, vault.Errorf(vault.KindRateLimited, vault.CodeRateLimited, "too many failed sign-ins from this address; wait and try again"))
			return
		}
	}
	a, err := c.svc.Authenticate(r.Context(), r.PostForm.Get("api_key"), id, addr)
	if err != nil {
		c.signInFailed(q, addr, err)
		return
	}
	secret, _, err := c.svc.StartConsoleSession(r.Context(), a, c.opts.Life)
	if err != nil {
		c.signInFailed(q, addr, err)
		return
	}
	clearCookie(w, loginCookie)
	setCookie(w, sessionCookie, secret, c.opts.Life.TTL)
	http.Redirect(w, r, Path+"/", http.StatusSeeOther)
}

// signInFailed charges a refused key to the address and shows the form
// again; any other failure is an error page.
func (c *Console) signInFailed(q *request, addr string, err error) {
	if vault.ErrorKind(err) != vault.KindUnauthenticated {
		c.fail(q, err)
		return
	}
	if c.opts.Throttle != nil {
		c.opts.Throttle.Failed(addr)
	}
	c.renderLogin(q, http.StatusUnauthorized, loginView{Failed: true})
}

// signOut ends the session (audited) and clears its cookie.
func (c *Console) signOut(q *request) error {
	ck, err := q.r.Cookie(sessionCookie)
	if err == nil {
		if err := c.svc.EndConsoleSession(q.ctx(), q.actor(), ck.Value); err != nil {
			return err
		}
	}
	clearCookie(q.w, sessionCookie)
	http.Redirect(q.w, q.r, Path+"/login", http.StatusSeeOther)
	return nil
}

// setCookie sets a console cookie: HttpOnly, Secure, SameSite=Strict, on
// the whole host, for ttl.
func setCookie(w http.ResponseWriter, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: max(1, int(ttl.Seconds())),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// randomToken returns 256 random bits in base64url.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}
