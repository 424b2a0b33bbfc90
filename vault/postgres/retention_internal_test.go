package postgres

import (
	"context"

	"github.com/cardvault/cardvault/vault"
)

// PruneRetainedInBatches is PruneRetained with batches of batch rows.
func PruneRetainedInBatches(ctx context.Context, s *Service, r vault.Retention, batch int) (vault.PruneCounts, error) {
	return s.pruneRetained(ctx, r, batch)
}

// PruneRetainedOnce runs each prune statement of PruneRetained once, with
// batches of batch rows (file chunks: at most retentionChunkBatch) and the
// retentions of r, and returns what each deleted.
func PruneRetainedOnce(ctx context.Context, s *Service, r vault.Retention, batch int) (vault.PruneCounts, error) {
	var c vault.PruneCounts
	for _, st := range pruneSteps(r, s.clock(), &c) {
		tag, err := s.db.Exec(ctx, st.sql, st.cutoff, st.batchOf(batch))
		if err != nil {
			return c, err
		}
		*st.n = tag.RowsAffected()
	}
	return c, nil
}
