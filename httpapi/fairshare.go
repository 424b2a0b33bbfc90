package httpapi

import (
	"sync"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// ctxSlot is the context key of the request's in-flight slot.
const ctxSlot = "cardvault.slot"

// fairSlots is the in-flight cap shared fairly between holders: a holder
// is a tenant once its request has authenticated, the presented API key
// before that, and the client address for a request without a key. With n
// holders holding slots, none may take a new one past cap/(n+1), so a
// holder alone gets at most half the cap and room is always left for one
// more holder: one tenant trickling slow bodies cannot starve the others.
type fairSlots struct {
	cap int

	mu    sync.Mutex
	total int
	held  map[string]int
}

// newFairSlots returns a cap of n slots; nil when n is 0 (uncapped).
func newFairSlots(n int) *fairSlots {
	if n <= 0 {
		return nil
	}
	return &fairSlots{cap: n, held: make(map[string]int)}
}

// share returns how many slots a holder may reach, the lock held: cap over
// the holders (counting h) plus one, at least one.
func (f *fairSlots) share(h string) int {
	n := len(f.held)
	if f.held[h] == 0 {
		n++
	}
	return max(1, f.cap/(n+1))
}

// acquire takes a slot for h, or reports false when the cap is full or h
// holds its share.
func (f *fairSlots) acquire(h string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total >= f.cap || f.held[h] >= f.share(h) {
		return false
	}
	f.total++
	f.held[h]++
	return true
}

// move hands one of from's slots to to, or reports false (the slot staying
// with from) when to already holds its share.
func (f *fairSlots) move(from, to string) bool {
	if from == to {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop(from)
	if f.held[to] >= f.share(to) {
		f.held[from]++
		return false
	}
	f.held[to]++
	return true
}

// release gives back one of h's slots.
func (f *fairSlots) release(h string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop(h)
	f.total--
}

// drop takes one slot off h's count, the lock held.
func (f *fairSlots) drop(h string) {
	if f.held[h] <= 1 {
		delete(f.held, h)
		return
	}
	f.held[h]--
}

// slot is one request's place in the cap and who holds it now.
type slot struct {
	slots  *fairSlots
	holder string
}

// preAuthHolder names the holder of a request before authentication: its
// presented API key (the non-secret part is enough to tell keys apart),
// else its client address.
func preAuthHolder(c echo.Context) string {
	if k := c.Request().Header.Get("X-API-Key"); k != "" {
		return "key:" + keyPrefix(k)
	}
	return "addr:" + c.RealIP()
}

// keyPrefix returns the part of a presented key that names it, cut to 64
// bytes so a huge header is not kept.
func keyPrefix(k string) string {
	const max = 64
	if len(k) > max {
		return k[:max]
	}
	return k
}

// tenantHolder names the holder of an authenticated request.
func tenantHolder(id uuid.UUID) string { return "tenant:" + id.String() }

// overloaded is the 503 of a full cap or a holder at its share.
func overloaded() error {
	return &vault.Error{Kind: vault.KindUnavailable, Code: vault.CodeOverloaded,
		Message: "the vault is serving as many requests as it can; retry shortly"}
}

// shareInflight moves the request's slot to its tenant once authenticated,
// answering 503 overloaded when the tenant already holds its share.
func (s *Server) shareInflight(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sl, ok := c.Get(ctxSlot).(*slot)
		if !ok {
			return next(c)
		}
		to := tenantHolder(actor(c).TenantID)
		if !sl.slots.move(sl.holder, to) {
			s.metrics.Refused(metrics.RefusedOverloaded)
			return overloaded()
		}
		sl.holder = to
		return next(c)
	}
}
