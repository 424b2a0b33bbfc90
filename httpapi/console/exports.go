package console

import (
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// exportRoutes registers the exports views (exports:read), as the API's
// GET /tokens/exports routes. Starting an export stays with the API and
// the command line, which take the other vault's key.
func (c *Console) exportRoutes() {
	m := c.mux
	m.HandleFunc("GET "+Path+"/exports", c.page(vault.ScopeExportsRead, c.exports))
	m.HandleFunc("GET "+Path+"/exports/{id}", c.page(vault.ScopeExportsRead, c.exportJob))
	m.HandleFunc("GET "+Path+"/exports/{id}/progress", c.poll(vault.ScopeExportsRead, c.exportJobProgress))
}

// exportsShown is how many jobs the exports view lists.
const exportsShown = 20

// exportsView is the exports view's data.
type exportsView struct {
	Jobs    []exportRow
	HasMore bool
}

// exportRow is one job of the list, with its live progress.
type exportRow struct {
	Job      vault.ExportJob
	Progress progressView
}

// exports serves the export jobs, newest first, with their progress.
func (c *Console) exports(q *request) error {
	page, err := c.svc.ListExports(q.ctx(), q.actor(), exportsShown, uuid.Nil)
	if err != nil {
		return err
	}
	ev := exportsView{HasMore: page.HasMore}
	for _, j := range page.Jobs {
		ev.Jobs = append(ev.Jobs, exportRow{Job: j, Progress: exportProgress(j)})
	}
	return c.show(q, "exports", "Exports", ev)
}

// exportProgress is a job's progress: tokens settled (exported or given
// up) of those selected.
func exportProgress(j vault.ExportJob) progressView {
	done := j.Successes + j.Failures
	return progressView{ID: j.ID, Status: string(j.Status), Done: done, Total: j.Total, Ended: j.Ended(),
		Percent: percent(done, j.Total, j.Ended()), Error: j.FailureReason,
		URL: Path + "/exports/" + j.ID.String(), Poll: Path + "/exports/" + j.ID.String() + "/progress",
		Label: "export"}
}

// exportView is a job's page: the job, its progress, and a page of its
// ledger (the mapping) filtered by status.
type exportView struct {
	Job      vault.ExportJob
	Progress progressView
	Items    []vault.ExportItem
	HasMore  bool
	Next     int64 // the seq to continue after
	Status   string
	Statuses []string
}

// exportJobOf returns the signed-in tenant's export job of the path's id.
func (c *Console) exportJobOf(q *request) (vault.ExportJob, error) {
	id, err := uuid.Parse(q.r.PathValue("id"))
	if err != nil {
		return vault.ExportJob{}, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such export")
	}
	return c.svc.GetExport(q.ctx(), q.actor(), id)
}

// exportJob serves a job's page: its counts, live progress and ledger
// (?status=…&after=<seq>).
func (c *Console) exportJob(q *request) error {
	j, err := c.exportJobOf(q)
	if err != nil {
		return err
	}
	qs := q.r.URL.Query()
	after, _ := strconv.ParseInt(qs.Get("after"), 10, 64)
	status := vault.ItemStatus(qs.Get("status"))
	items, err := c.svc.ListExportItems(q.ctx(), q.actor(), j.ID, status, ledgerShown, after)
	if err != nil {
		return err
	}
	ev := exportView{Job: j, Progress: exportProgress(j), Items: items.Items, HasMore: items.HasMore, Status: string(status),
		Statuses: []string{"", string(vault.ItemPending), string(vault.ItemSucceeded), string(vault.ItemFailed)}}
	if n := len(items.Items); n > 0 {
		ev.Next = items.Items[n-1].Seq
	}
	return c.show(q, "export", "Export", ev)
}

// exportJobProgress answers a job's progress as JSON.
func (c *Console) exportJobProgress(q *request) error {
	j, err := c.exportJobOf(q)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, exportProgress(j))
	return nil
}
