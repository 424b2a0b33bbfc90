package console

import (
	"context"

	"github.com/cardvault/cardvault/vault"
)

// FORWARDING VIEW — a place kept for it, not built yet.
//
// The forwarding view (destinations, recent forwards redacted, destination
// latency) belongs with the vault's forwarding role. Until the service
// offers it, forwardingSource is implemented by no service, so the view and
// its navigation entry stay hidden and /console/forwarding answers 404. To
// build it: replace forwardingSource with the forwarding role interface the
// vault declares, fill forwardingView from it in forwarding, and complete
// templates/forwarding.html (which marks the same place).

// forwardingSource is what the forwarding view will read of the vault.
type forwardingSource interface {
	// ConsoleForwardingOverview is a placeholder name: no service has it.
	ConsoleForwardingOverview(ctx context.Context, a vault.Actor) (forwardingView, error)
}

// forwardingView is the forwarding view's data.
type forwardingView struct{}

// forwardingOffered reports whether the service offers forwarding.
func (c *Console) forwardingOffered() bool {
	_, ok := c.svc.(forwardingSource)
	return ok
}

// forwardingRoutes registers the forwarding view when the service offers
// it.
func (c *Console) forwardingRoutes() {
	if !c.forwardingOffered() {
		return
	}
	c.mux.HandleFunc("GET "+Path+"/forwarding", c.page(vault.ScopeTokensRead, c.forwarding))
}

// forwarding serves the forwarding view.
func (c *Console) forwarding(q *request) error {
	fv, err := c.svc.(forwardingSource).ConsoleForwardingOverview(q.ctx(), q.actor())
	if err != nil {
		return err
	}
	return c.show(q, "forwarding", "Forwarding", fv)
}
