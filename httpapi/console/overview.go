package console

import (
	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// overviewDays is how many days the overview's charts cover.
const overviewDays = 14

// overviewView is the overview's data: only what the key may see.
type overviewView struct {
	TokensHeld    *int64
	Charts        []barChart
	OverdueKeys   []vault.KeyVersion
	KeysShown     bool
	ActiveImports []progressView
	ImportsShown  bool
}

// overview serves /console/: activity charts, keys overdue and imports
// under way, each shown only to a key with the scope its API twin needs.
func (c *Console) overview(q *request) error {
	var ov overviewView
	if err := c.overviewActivity(q, &ov); err != nil {
		return err
	}
	if q.actor().Can(vault.ScopeKeysManage) {
		ks, _, err := c.tenantKeys(q)
		if err != nil {
			return err
		}
		ov.KeysShown = true
		for _, k := range ks.Keys {
			if k.Overdue {
				ov.OverdueKeys = append(ov.OverdueKeys, k)
			}
		}
	}
	if q.actor().Can(vault.ScopeImportsRead) {
		page, err := c.svc.ListImports(q.ctx(), q.actor(), 5, uuid.Nil)
		if err != nil {
			return err
		}
		ov.ImportsShown = true
		for _, j := range page.Jobs {
			if j.Active() {
				ov.ActiveImports = append(ov.ActiveImports, importProgress(j))
			}
		}
	}
	return c.show(q, "overview", "Overview", ov)
}

// overviewActivity adds the charts of the tenant's activity the key may
// see: tokens (tokens:read), imports (imports:read), errors (audit:read).
func (c *Console) overviewActivity(q *request, ov *overviewView) error {
	a := q.actor()
	if !a.Can(vault.ScopeTokensRead) && !a.Can(vault.ScopeImportsRead) && !a.Can(vault.ScopeAuditRead) {
		return nil
	}
	r, err := c.svc.Activity(q.ctx(), a, overviewDays)
	if err != nil {
		return err
	}
	if a.Can(vault.ScopeTokensRead) {
		ov.TokensHeld = &r.TokensHeld
		ov.Charts = append(ov.Charts, dailyChart("Tokens created per day", "tokens-chart", r.Days,
			func(d vault.ActivityDay) int64 { return d.Tokens }))
	}
	if a.Can(vault.ScopeImportsRead) {
		ov.Charts = append(ov.Charts, dailyChart("Cards imported per day", "imports-chart", r.Days,
			func(d vault.ActivityDay) int64 { return d.Imported }))
	}
	if a.Can(vault.ScopeAuditRead) {
		ov.Charts = append(ov.Charts, dailyChart("Failed or refused actions per day", "errors-chart", r.Days,
			func(d vault.ActivityDay) int64 { return d.Errors }))
	}
	return nil
}
