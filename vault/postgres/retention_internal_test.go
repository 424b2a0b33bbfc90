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

// PruneTokenVersionsInBatches is PruneTokenVersions with batches of batch
// rows.
func PruneTokenVersionsInBatches(ctx context.Context, s *Service, retention time.Duration, batch int) (int64, error) {
	return s.pruneTokenVersions(ctx, retention, batch)
}

// PruneTokenVersionsOnce runs the statement of PruneTokenVersions once, with
// a batch of batch rows, and returns what it deleted.
func PruneTokenVersionsOnce(ctx context.Context, s *Service, retention time.Duration, batch int) (int64, error) {
	tag, err := s.db.Exec(ctx, pruneTokenVersionsSQL, s.clock().Add(-retention), batch)
	return tag.RowsAffected(), err
}
