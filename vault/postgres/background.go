package postgres

import (
	"context"

	"github.com/google/uuid"
)

// The one-pass work behind a serving process's background loops; the loops
// themselves, with their intervals, are listed in one place in cmd/cardvault.

// RefreshKeys picks up the keysets other processes rotated and flushes this
// process's encryption counts. It returns the first failure, a domain error.
func (s *Service) RefreshKeys(ctx context.Context) error {
	if err := s.keys.refresh(ctx); err != nil {
		return err
	}
	return s.FlushKeyUsage(ctx)
}

// RunKeyJobs runs claimable key jobs one after another until none is left.
// owner names this worker in each job's lease. It returns the first failure.
func (s *Service) RunKeyJobs(ctx context.Context, owner string) error {
	for {
		ran, err := s.RunOneKeyJob(ctx, owner, uuid.Nil)
		if err != nil || !ran {
			return err
		}
	}
}
