package postgres

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// keyUsage counts encryptions per tenant data key in memory; FlushKeyUsage
// adds the counts to tenant_key_versions every few seconds, so the hot path
// never writes a shared row.
type keyUsage struct {
	mu     sync.Mutex
	counts map[usageKey]int64
}

type usageKey struct {
	tenant uuid.UUID
	keyID  uint32
}

func (u *keyUsage) add(tenant uuid.UUID, keyID uint32) {
	u.mu.Lock()
	if u.counts == nil {
		u.counts = map[usageKey]int64{}
	}
	u.counts[usageKey{tenant, keyID}]++
	u.mu.Unlock()
}

// take returns the counts so far and starts new ones.
func (u *keyUsage) take() map[usageKey]int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.counts
	u.counts = nil
	return c
}

// FlushKeyUsage adds the encryptions counted since the last flush to the
// key versions' totals. Counts that cannot be written are kept for the next
// flush; it returns a domain error then.
func (s *Service) FlushKeyUsage(ctx context.Context) error {
	counts := s.usage.take()
	for k, n := range counts {
		_, err := s.db.Exec(ctx, `UPDATE tenant_key_versions SET encryptions = encryptions + $3
			WHERE tenant_id = $1 AND purpose = 'data' AND key_id = $2`, k.tenant, int64(k.keyID), n)
		if err != nil {
			s.usage.mu.Lock()
			for k, n := range counts {
				if s.usage.counts == nil {
					s.usage.counts = map[usageKey]int64{}
				}
				s.usage.counts[k] += n
			}
			s.usage.mu.Unlock()
			return dbError(err, "key version")
		}
		delete(counts, k)
	}
	return nil
}
