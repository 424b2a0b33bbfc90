package postgres

import (
	"context"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// PruneRetainedInBatches is PruneRetained with batches of batch rows.
func PruneRetainedInBatches(ctx context.Context, s *Service, r vault.Retention, batch int) (vault.PruneCounts, error) {
	return s.pruneRetained(ctx, r, batch)
}

// PruneRetainedOnce runs each prune statement of PruneRetained once, with
// batches of batch rows and the retentions of r, and returns what each
// deleted.
func PruneRetainedOnce(ctx context.Context, s *Service, r vault.Retention, batch int) (vault.PruneCounts, error) {
	var c vault.PruneCounts
	now := s.clock()
	for _, st := range []struct {
		sql string
		d   time.Duration
		n   *int64
	}{
		{pruneWebhookDeliveriesSQL, r.Webhooks, &c.WebhookDeliveries},
		{pruneWebhookEventsSQL, r.Webhooks, &c.WebhookEvents},
		{pruneImportItemsSQL, r.Imports, &c.ImportItems},
		{pruneImportJobsSQL, r.Imports, &c.ImportJobs},
		{pruneKeyJobsSQL, r.KeyJobs, &c.KeyJobs},
	} {
		tag, err := s.db.Exec(ctx, st.sql, now.Add(-st.d), batch)
		if err != nil {
			return c, err
		}
		*st.n = tag.RowsAffected()
	}
	return c, nil
}
