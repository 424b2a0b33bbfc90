package console

import (
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// auditRoutes registers the audit trail and its verification, both under
// audit:read, as GET /audit-events.
func (c *Console) auditRoutes() {
	c.mux.HandleFunc("GET "+Path+"/audit", c.page(vault.ScopeAuditRead, c.audit))
	c.mux.HandleFunc("POST "+Path+"/audit/verify", c.action(vault.ScopeAuditRead, c.verifyAudit))
}

// auditShown is how many events a page of the trail shows.
const auditShown = 50

// auditView is the audit view's data.
type auditView struct {
	Events  []vault.AuditEvent
	HasMore bool
	Next    int64
	Action  string
	Token   string
	Actions []vault.Action
	Report  *vault.AuditReport
}

// auditActions are offered in the action filter; any other action can be
// typed.
var auditActions = []vault.Action{
	vault.ActionTokenCreate, vault.ActionTokenUpdate, vault.ActionTokenRead, vault.ActionTokenList,
	vault.ActionTokenReveal, vault.ActionTokenDelete, vault.ActionAuthFailed, vault.ActionAuthDenied,
	vault.ActionAPIKeyCreate, vault.ActionAPIKeyRevoke, vault.ActionKeyAdd, vault.ActionKeyPromote,
	vault.ActionKeyDisable, vault.ActionKeyDestroy, vault.ActionReencrypt, vault.ActionImportCreate,
	vault.ActionImportFinish, vault.ActionConsoleSignIn, vault.ActionConsoleSignOut, vault.ActionAuditVerify,
}

// auditFilter reads ?action=…&token=…; a malformed token id is refused.
func auditFilter(q *request) (vault.AuditFilter, auditView, error) {
	qs := q.r.URL.Query()
	av := auditView{Action: strings.TrimSpace(qs.Get("action")), Token: strings.TrimSpace(qs.Get("token")), Actions: auditActions}
	f := vault.AuditFilter{Action: vault.Action(av.Action)}
	if av.Token != "" {
		id, err := uuid.Parse(av.Token)
		if err != nil {
			return f, av, vault.InvalidParam(vault.CodeParameterInvalid, "token", "token must be a token id")
		}
		f.TokenID = id
	}
	return f, av, nil
}

// audit serves the tenant's audit trail, newest first, filtered by action
// and token (?after=<event id> pages on); the listing is itself audited.
func (c *Console) audit(q *request) error {
	f, av, err := auditFilter(q)
	if err != nil {
		return err
	}
	after, _ := strconv.ParseInt(q.r.URL.Query().Get("after"), 10, 64)
	page, err := c.svc.FindAuditEvents(q.ctx(), q.actor(), f, auditShown, after)
	if err != nil {
		return err
	}
	av.Events, av.HasMore = page.Events, page.HasMore
	if n := len(page.Events); n > 0 {
		av.Next = page.Events[n-1].ID
	}
	return c.show(q, "audit", "Audit trail", av)
}

// verifyAudit verifies the tenant's audit chain (audited) and shows the
// result with the first bad row, if any.
func (c *Console) verifyAudit(q *request) error {
	r, err := c.svc.VerifyTenantAudit(q.ctx(), q.actor())
	if err != nil {
		return err
	}
	return c.show(q, "verify", "Audit verification", auditView{Report: &r})
}
