package postgres

import (
	"context"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// Background says how often the background work of a serving process runs.
type Background struct {
	Owner      string        // names this process in key job leases
	KeyRefresh time.Duration // reload rotated keysets and flush key usage (default 2s)
	CVCSweep   time.Duration // destroy expired CVCs (default 1m)
	KeyJobPoll time.Duration // look for key jobs to run (default 2s)
	// AuditChain is how often new audit rows are linked into their chains
	// (default 1s); AuditPrune how often rows older than AuditRetention
	// (default DefaultAuditRetention) are pruned (default 1h).
	AuditChain     time.Duration
	AuditPrune     time.Duration
	AuditRetention time.Duration
}

func (b *Background) defaults() {
	if b.KeyRefresh <= 0 {
		b.KeyRefresh = 2 * time.Second
	}
	if b.CVCSweep <= 0 {
		b.CVCSweep = time.Minute
	}
	if b.KeyJobPoll <= 0 {
		b.KeyJobPoll = 2 * time.Second
	}
	if b.AuditChain <= 0 {
		b.AuditChain = time.Second
	}
	if b.AuditPrune <= 0 {
		b.AuditPrune = time.Hour
	}
	if b.AuditRetention <= 0 {
		b.AuditRetention = vault.DefaultAuditRetention
	}
}

// RunBackground runs a serving process's background work until ctx ends:
// picking up keysets rotated by other processes, flushing encryption
// counts, sweeping expired CVCs, running key jobs, and chaining and pruning
// the audit trail. Failures are logged and retried on the next tick; the
// key usage is flushed once more on the way out.
func (s *Service) RunBackground(ctx context.Context, b Background) {
	b.defaults()
	go s.RunKeyJobs(ctx, b.Owner, b.KeyJobPoll)
	go s.RunCVCSweeper(ctx, b.CVCSweep)
	go s.RunAuditChainer(ctx, b.AuditChain, b.AuditRetention, b.AuditPrune)
	t := time.NewTicker(b.KeyRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.FlushKeyUsage(flushCtx); err != nil {
				s.log.Error("flushing key usage", "error", err)
			}
			return
		case <-t.C:
		}
		if err := s.keys.refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("refreshing tenant keys", "error", err)
		}
		if err := s.FlushKeyUsage(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("flushing key usage", "error", err)
		}
	}
}
