package console

import (
	"github.com/cardvault/cardvault/vault"
)

// deliveriesShown is how many delivery attempts the webhooks view lists.
const deliveriesShown = 50

// webhooksView is the webhooks view's data: the endpoint (nil when none
// is set) and its latest delivery attempts.
type webhooksView struct {
	Webhook    *vault.Webhook
	Deliveries []vault.WebhookDelivery
	HasMore    bool
}

// webhooks serves the tenant's webhook endpoint (never its secret) and its
// delivery attempts with their outcomes; both reads are audited as their
// API twins.
func (c *Console) webhooks(q *request) error {
	var wv webhooksView
	wh, err := c.svc.GetWebhook(q.ctx(), q.actor())
	switch {
	case err == nil:
		wv.Webhook = &wh
	case vault.ErrorKind(err) != vault.KindNotFound:
		return err
	}
	page, err := c.svc.ListWebhookDeliveries(q.ctx(), q.actor(), deliveriesShown, 0)
	if err != nil {
		return err
	}
	wv.Deliveries, wv.HasMore = page.Deliveries, page.HasMore
	return c.show(q, "webhooks", "Webhooks", wv)
}
