package console

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// keyRoutes registers the keys view, its confirmations, actions and
// re-encryption progress. Every one needs keys:manage (and a client
// certificate when the deployment asks for one), as the API's /keys routes.
func (c *Console) keyRoutes() {
	m, s := c.mux, vault.ScopeKeysManage
	m.HandleFunc("GET "+Path+"/keys", c.page(s, c.keysCert(c.keys)))
	m.HandleFunc("GET "+Path+"/keys/confirm", c.page(s, c.keysCert(c.confirmKeyAction)))
	m.HandleFunc("POST "+Path+"/keys/rotate", c.action(s, c.keysCert(c.rotate)))
	m.HandleFunc("POST "+Path+"/keys/reencrypt", c.action(s, c.keysCert(c.reencrypt)))
	m.HandleFunc("POST "+Path+"/keys/retire", c.action(s, c.keysCert(c.retire(false))))
	m.HandleFunc("POST "+Path+"/keys/destroy", c.action(s, c.keysCert(c.retire(true))))
	m.HandleFunc("GET "+Path+"/keys/jobs/{id}", c.page(s, c.keysCert(c.keyJob)))
	m.HandleFunc("GET "+Path+"/keys/jobs/{id}/progress", c.poll(s, c.keysCert(c.keyJobProgress)))
}

// keysCert refuses a key route without a verified client certificate when
// Options.ClientCertForKeys asks for one.
func (c *Console) keysCert(h handler) handler {
	return func(q *request) error {
		if c.opts.ClientCertForKeys && (q.r.TLS == nil || len(q.r.TLS.VerifiedChains) == 0) {
			return vault.Errorf(vault.KindForbidden, vault.CodeClientCertificateRequired,
				"key management requires a TLS client certificate issued by the vault's client CA")
		}
		return h(q)
	}
}

// tenantKeys returns the key status of the signed-in tenant and the
// redacted root KEK URI (audited as a key.status read, as GET /keys is).
func (c *Console) tenantKeys(q *request) (vault.TenantKeyStatus, string, error) {
	r, err := c.svc.KeyReport(q.ctx(), q.actor(), []uuid.UUID{q.actor().TenantID}, c.opts.RootKEKURI, c.opts.Cryptoperiod)
	if err != nil {
		return vault.TenantKeyStatus{}, "", err
	}
	for _, t := range r.Tenants {
		if t.TenantID == q.actor().TenantID {
			return t, r.RootKEKURI, nil
		}
	}
	return vault.TenantKeyStatus{}, "", vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no keys for this tenant")
}

// keysView is the keys view's data.
type keysView struct {
	Status           vault.TenantKeyStatus
	Chart            barChart
	RootKEKURI       string
	CryptoperiodDays int
	Primary          vault.KeyVersion
	OffPrimary       int64 // tokens still sealed under another key
}

func (c *Console) keysData(q *request) (keysView, error) {
	st, kek, err := c.tenantKeys(q)
	if err != nil {
		return keysView{}, err
	}
	kv := keysView{Status: st, Chart: keyChart(st.Keys), RootKEKURI: kek,
		CryptoperiodDays: int(c.opts.Cryptoperiod / (24 * time.Hour))}
	for _, k := range st.Keys {
		if k.State == "primary" {
			kv.Primary = k
		} else {
			kv.OffPrimary += k.Tokens
		}
	}
	return kv, nil
}

// keys serves the keys view: every version, its state, how many tokens it
// protects, its age against the cryptoperiod, and the actions.
func (c *Console) keys(q *request) error {
	kv, err := c.keysData(q)
	if err != nil {
		return err
	}
	return c.show(q, "keys", "Keys", kv)
}

// confirmView is a confirmation page: what will happen to which key, and
// the form that does it.
type confirmView struct {
	Action, Heading, Explain, Button, Danger string
	KeyID                                    uint32
	Target                                   string // where the form posts
	Back                                     string // the view to return to
}

// confirmKeyAction serves the confirmation of a key action, naming the
// key it acts on.
func (c *Console) confirmKeyAction(q *request) error {
	kv, err := c.keysData(q)
	if err != nil {
		return err
	}
	cv, err := keyConfirmation(kv, q.r.URL.Query().Get("action"), q.r.URL.Query().Get("key_id"))
	if err != nil {
		return err
	}
	cv.Target, cv.Back = Path+"/keys/"+cv.Action, Path+"/keys"
	return c.show(q, "confirm", cv.Heading, cv)
}

// keyConfirmation words the confirmation of action on the tenant's keys kv
// (retire and destroy act on the key rawID).
func keyConfirmation(kv keysView, action, rawID string) (confirmView, error) {
	switch action {
	case "rotate":
		return confirmView{Action: "rotate", KeyID: kv.Primary.KeyID,
			Heading: fmt.Sprintf("Rotate data key %d?", kv.Primary.KeyID),
			Explain: fmt.Sprintf("A new key becomes primary and seals every new card. Key %d (primary, %s tokens) keeps decrypting until its tokens are re-encrypted and it is retired.", kv.Primary.KeyID, groupThousands(kv.Primary.Tokens)),
			Button:  fmt.Sprintf("Rotate key %d", kv.Primary.KeyID)}, nil
	case "reencrypt":
		return confirmView{Action: "reencrypt", KeyID: kv.Primary.KeyID,
			Heading: fmt.Sprintf("Re-encrypt under key %d?", kv.Primary.KeyID),
			Explain: fmt.Sprintf("%s tokens sealed under older keys will be re-sealed under primary key %d, online, in batches.", groupThousands(kv.OffPrimary), kv.Primary.KeyID),
			Button:  fmt.Sprintf("Re-encrypt under key %d", kv.Primary.KeyID)}, nil
	case "retire", "destroy":
		return retireConfirmation(kv, action, rawID)
	}
	return confirmView{}, vault.Errorf(vault.KindNotFound, vault.CodeRouteNotFound, "no such key action")
}

// retireConfirmation words the retirement (disabling) or destruction of
// the key rawID.
func retireConfirmation(kv keysView, action, rawID string) (confirmView, error) {
	k, err := findKey(kv.Status, rawID)
	if err != nil {
		return confirmView{}, err
	}
	cv := confirmView{Action: action, KeyID: k.KeyID, Danger: "danger",
		Heading: fmt.Sprintf("Retire data key %d?", k.KeyID),
		Explain: fmt.Sprintf("Key %d (%s, %s tokens) will no longer decrypt anything. The vault refuses while any token still needs it.", k.KeyID, k.State, groupThousands(k.Tokens)),
		Button:  fmt.Sprintf("Retire key %d", k.KeyID)}
	if action == "destroy" {
		cv.Heading = fmt.Sprintf("Destroy data key %d?", k.KeyID)
		cv.Explain = fmt.Sprintf("The material of key %d (%s) will be deleted for good. Nothing sealed under it could ever be decrypted again.", k.KeyID, k.State)
		cv.Button = fmt.Sprintf("Destroy key %d", k.KeyID)
	}
	return cv, nil
}

// findKey returns the version of st named by the key id raw.
func findKey(st vault.TenantKeyStatus, raw string) (vault.KeyVersion, error) {
	id, err := strconv.ParseUint(raw, 10, 32)
	if err == nil {
		for _, k := range st.Keys {
			if k.KeyID == uint32(id) {
				return k, nil
			}
		}
	}
	return vault.KeyVersion{}, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such data key")
}

// rotate rotates the data key (as POST /keys/rotate) and shows the keys.
func (c *Console) rotate(q *request) error {
	if _, err := c.svc.RotateDataKey(q.ctx(), q.actor(), c.opts.Propagation); err != nil {
		return err
	}
	http.Redirect(q.w, q.r, Path+"/keys?done=rotated", http.StatusSeeOther)
	return nil
}

// reencrypt starts re-encryption (as POST /keys/reencrypt), or finds the
// one under way, and shows its progress.
func (c *Console) reencrypt(q *request) error {
	job, _, err := c.svc.StartReencrypt(q.ctx(), q.actor())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, Path+"/keys/jobs/"+job.ID.String(), http.StatusSeeOther)
	return nil
}

// retire retires (disables), or with destroy destroys, the posted key id
// (as POST /keys/retire).
func (c *Console) retire(destroy bool) handler {
	return func(q *request) error {
		id, err := strconv.ParseUint(q.r.PostForm.Get("key_id"), 10, 32)
		if err != nil {
			return vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such data key")
		}
		if err := c.svc.RetireDataKey(q.ctx(), q.actor(), uint32(id), destroy); err != nil {
			return err
		}
		done := "retired"
		if destroy {
			done = "destroyed"
		}
		http.Redirect(q.w, q.r, Path+"/keys?done="+done, http.StatusSeeOther)
		return nil
	}
}

// progressView is a job's progress as a page shows it and the poll
// answers it.
type progressView struct {
	ID      uuid.UUID `json:"id"`
	Status  string    `json:"status"`
	Done    int64     `json:"done"`
	Total   int64     `json:"total"`
	Percent string    `json:"percent"`
	Ended   bool      `json:"ended"`
	Error   string    `json:"error,omitempty"`
	URL     string    `json:"-"` // the page of the job
	Poll    string    `json:"-"` // where the page polls
	Label   string    `json:"-"`
}

// percent writes done of total as a whole percentage ("42 %"); a job with
// nothing to do is at 100 % once it has ended.
func percent(done, total int64, ended bool) string {
	if total <= 0 {
		if ended {
			return "100 %"
		}
		return "0 %"
	}
	return fmt.Sprintf("%d %%", min(100, done*100/total))
}

func keyJobProgress(j vault.KeyJob) progressView {
	ended := j.Status == "finished" || j.Status == "failed"
	return progressView{ID: j.ID, Status: j.Status, Done: j.Done, Total: j.Total, Ended: ended,
		Percent: percent(j.Done, j.Total, ended), Error: j.Error,
		URL: Path + "/keys/jobs/" + j.ID.String(), Poll: Path + "/keys/jobs/" + j.ID.String() + "/progress",
		Label: "re-encryption"}
}

// keyJobOf returns the signed-in tenant's key job of the path's id.
func (c *Console) keyJobOf(q *request) (vault.KeyJob, error) {
	id, err := uuid.Parse(q.r.PathValue("id"))
	if err != nil {
		return vault.KeyJob{}, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such key job")
	}
	return c.svc.GetKeyJob(q.ctx(), q.actor().TenantID, id)
}

// keyJob serves a re-encryption job's page; its script follows the
// progress live.
func (c *Console) keyJob(q *request) error {
	j, err := c.keyJobOf(q)
	if err != nil {
		return err
	}
	return c.show(q, "keyjob", "Re-encryption", keyJobProgress(j))
}

// keyJobProgress answers a re-encryption job's progress as JSON.
func (c *Console) keyJobProgress(q *request) error {
	j, err := c.keyJobOf(q)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, keyJobProgress(j))
	return nil
}
