package console

import (
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// importRoutes registers the imports views (imports:read) and the start
// of an import (imports:write), as the API's /tokens/imports routes.
func (c *Console) importRoutes() {
	m := c.mux
	m.HandleFunc("GET "+Path+"/imports", c.page(vault.ScopeImportsRead, c.imports))
	m.HandleFunc("POST "+Path+"/imports", c.action(vault.ScopeImportsWrite, c.startImport))
	m.HandleFunc("GET "+Path+"/imports/{id}", c.page(vault.ScopeImportsRead, c.importJob))
	m.HandleFunc("GET "+Path+"/imports/{id}/progress", c.poll(vault.ScopeImportsRead, c.importJobProgress))
}

// importsShown is how many jobs the imports view lists.
const importsShown = 20

// importsView is the imports view's data.
type importsView struct {
	Jobs     []importRow
	HasMore  bool
	CanStart bool
}

// importRow is one job of the list, with its live progress.
type importRow struct {
	Job      vault.ImportJob
	Progress progressView
}

// imports serves the import jobs, newest first, with their progress and
// the form that starts one.
func (c *Console) imports(q *request) error {
	page, err := c.svc.ListImports(q.ctx(), q.actor(), importsShown, uuid.Nil)
	if err != nil {
		return err
	}
	iv := importsView{HasMore: page.HasMore, CanStart: q.actor().Can(vault.ScopeImportsWrite)}
	for _, j := range page.Jobs {
		iv.Jobs = append(iv.Jobs, importRow{Job: j, Progress: importProgress(j)})
	}
	return c.show(q, "imports", "Imports", iv)
}

// importProgress is a job's progress: payment methods settled (imported,
// given up or skipped) of those found.
func importProgress(j vault.ImportJob) progressView {
	done := j.Successes + j.Failures + j.Skipped
	return progressView{ID: j.ID, Status: string(j.Status), Done: done, Total: j.Total, Ended: j.Ended(),
		Percent: percent(done, j.Total, j.Ended()), Error: j.FailureReason,
		URL: Path + "/imports/" + j.ID.String(), Poll: Path + "/imports/" + j.ID.String() + "/progress",
		Label: "import"}
}

// startImport starts a Stripe import with the posted key (as POST
// /tokens/imports), wakes the workers and shows the job.
func (c *Console) startImport(q *request) error {
	in := vault.CreateImportInput{Provider: vault.ProviderStripe, StripeAPIKey: card.NewSecret(q.r.PostForm.Get("stripe_api_key"))}
	job, err := c.svc.CreateImport(q.ctx(), q.actor(), in)
	if err != nil {
		return err
	}
	if c.opts.ImportWaker != nil {
		c.opts.ImportWaker.Wake()
	}
	http.Redirect(q.w, q.r, Path+"/imports/"+job.ID.String(), http.StatusSeeOther)
	return nil
}

// ledgerShown is how many ledger lines a job's page shows at once.
const ledgerShown = 50

// importView is a job's page: the job, its progress, and a page of its
// ledger filtered by status.
type importView struct {
	Job      vault.ImportJob
	Progress progressView
	Items    []vault.ImportItem
	HasMore  bool
	Next     int64 // the seq to continue after
	Status   string
	Statuses []string
}

// importJobOf returns the signed-in tenant's import job of the path's id.
func (c *Console) importJobOf(q *request) (vault.ImportJob, error) {
	id, err := uuid.Parse(q.r.PathValue("id"))
	if err != nil {
		return vault.ImportJob{}, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such import")
	}
	return c.svc.GetImport(q.ctx(), q.actor(), id)
}

// importJob serves a job's page: its counts, live progress and ledger
// (?status=…&after=<seq>).
func (c *Console) importJob(q *request) error {
	j, err := c.importJobOf(q)
	if err != nil {
		return err
	}
	qs := q.r.URL.Query()
	after, _ := strconv.ParseInt(qs.Get("after"), 10, 64)
	status := vault.ItemStatus(qs.Get("status"))
	items, err := c.svc.ListImportItems(q.ctx(), q.actor(), j.ID, status, ledgerShown, after)
	if err != nil {
		return err
	}
	iv := importView{Job: j, Progress: importProgress(j), Items: items.Items, HasMore: items.HasMore, Status: string(status),
		Statuses: []string{"", string(vault.ItemPending), string(vault.ItemSucceeded), string(vault.ItemFailed), string(vault.ItemSkipped)}}
	if n := len(items.Items); n > 0 {
		iv.Next = items.Items[n-1].Seq
	}
	return c.show(q, "import", "Import", iv)
}

// importJobProgress answers a job's progress as JSON.
func (c *Console) importJobProgress(q *request) error {
	j, err := c.importJobOf(q)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, importProgress(j))
	return nil
}
