package console

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// apiKeyRoutes registers the API keys view, creation and revocation. They
// need keys:manage: a key that manages the vault's keys manages its API
// keys too, and can grant only the scopes it holds.
func (c *Console) apiKeyRoutes() {
	m, s := c.mux, vault.ScopeKeysManage
	m.HandleFunc("GET "+Path+"/api-keys", c.page(s, c.apiKeys))
	m.HandleFunc("POST "+Path+"/api-keys", c.action(s, c.createAPIKey))
	m.HandleFunc("GET "+Path+"/api-keys/{id}/revoke", c.page(s, c.confirmRevoke))
	m.HandleFunc("POST "+Path+"/api-keys/{id}/revoke", c.action(s, c.revokeAPIKey))
}

// apiKeysView is the API keys view's data.
type apiKeysView struct {
	Keys      []vault.APIKey
	Grantable []vault.Scope // the scopes the signed-in key may grant
	Self      uuid.UUID
	Created   *createdKey
}

// createdKey is a key just made, with its secret, shown this once.
type createdKey struct {
	Key    vault.APIKey
	Secret string
}

func (c *Console) apiKeysData(q *request) (apiKeysView, error) {
	keys, err := c.svc.ListTenantAPIKeys(q.ctx(), q.actor())
	if err != nil {
		return apiKeysView{}, err
	}
	var grantable []vault.Scope
	for _, s := range vault.AllScopes {
		if q.actor().Can(s) {
			grantable = append(grantable, s)
		}
	}
	return apiKeysView{Keys: keys, Grantable: grantable, Self: q.actor().APIKeyID}, nil
}

// apiKeys serves the tenant's API keys, revoked ones included.
func (c *Console) apiKeys(q *request) error {
	v, err := c.apiKeysData(q)
	if err != nil {
		return err
	}
	return c.show(q, "apikeys", "API keys", v)
}

// createAPIKey makes a key with the posted scopes and description, and
// shows its secret once (the answer is never cached, and is not a
// redirect: reloading it cannot show the secret again).
func (c *Console) createAPIKey(q *request) error {
	var scopes []vault.Scope
	for _, s := range q.r.PostForm["scope"] {
		sc, err := vault.ParseScopes(s)
		if err != nil {
			return err
		}
		scopes = append(scopes, sc...)
	}
	secret, k, err := c.svc.CreateTenantAPIKey(q.ctx(), q.actor(), scopes, strings.TrimSpace(q.r.PostForm.Get("description")))
	if err != nil {
		return err
	}
	v, err := c.apiKeysData(q)
	if err != nil {
		return err
	}
	v.Created = &createdKey{Key: k, Secret: secret}
	c.render(q, http.StatusCreated, "apikeys", c.signedInView(q, "api-keys", "API keys", v))
	return nil
}

// keyOf returns the tenant's API key of the path's id.
func (c *Console) keyOf(q *request) (vault.APIKey, error) {
	id, err := uuid.Parse(q.r.PathValue("id"))
	if err == nil {
		keys, err := c.svc.ListTenantAPIKeys(q.ctx(), q.actor())
		if err != nil {
			return vault.APIKey{}, err
		}
		for _, k := range keys {
			if k.ID == id && k.RevokedAt == nil {
				return k, nil
			}
		}
	}
	return vault.APIKey{}, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such API key")
}

// confirmRevoke asks to revoke the key, naming it, and warns when it is
// the key signed in.
func (c *Console) confirmRevoke(q *request) error {
	k, err := c.keyOf(q)
	if err != nil {
		return err
	}
	cv := confirmView{Action: "revoke", Danger: "danger",
		Heading: fmt.Sprintf("Revoke API key %s?", k.Prefix),
		Explain: fmt.Sprintf("Key %s (%q, %d scopes) stops working at once, for every client that uses it.", k.Prefix, k.Description, len(k.Scopes)),
		Button:  fmt.Sprintf("Revoke key %s", k.Prefix)}
	if k.ID == q.actor().APIKeyID {
		cv.Explain += " It is the key you signed in with: you will be signed out."
	}
	cv.Back = Path + "/api-keys"
	cv.Target = Path + "/api-keys/" + k.ID.String() + "/revoke"
	return c.show(q, "confirm", cv.Heading, cv)
}

// revokeAPIKey revokes the key (audited, its console sessions ended); the
// browser of a key that revoked itself goes to the sign-in page.
func (c *Console) revokeAPIKey(q *request) error {
	id, err := uuid.Parse(q.r.PathValue("id"))
	if err != nil {
		return vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such API key")
	}
	if _, err := c.svc.RevokeTenantAPIKey(q.ctx(), q.actor(), id); err != nil {
		return err
	}
	if id == q.actor().APIKeyID {
		clearCookie(q.w, sessionCookie)
		http.Redirect(q.w, q.r, Path+"/login?revoked=1", http.StatusSeeOther)
		return nil
	}
	http.Redirect(q.w, q.r, Path+"/api-keys?done=revoked", http.StatusSeeOther)
	return nil
}
