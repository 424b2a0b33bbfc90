package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/cardvault/cardvault/vault"
)

// DefaultAccessFailureWindow is how long repeated refusals of one source
// are counted in one audit row when Config.AccessFailureWindow is 0.
const DefaultAccessFailureWindow = 10 * time.Second

// DefaultAccessFailureSources is how many distinct sources one window
// keeps apart when Config.AccessFailureSources is 0; past it they fold
// into one row per action.
const DefaultAccessFailureSources = 256

// maxRequestedID bounds the length of a requested id kept in a row.
const maxRequestedID = 64

// failureKey is what makes two refusals the same source: they share a row.
type failureKey struct {
	action      vault.Action
	outcome     vault.Outcome
	reason      string
	route       string
	requestedID string
	scope       vault.Scope
	tenant      uuid.UUID
	apiKey      uuid.UUID
	addr        string
}

// failureCount is one row in the making: how many refusals, when the first
// and the last came, and the first one's request id.
type failureCount struct {
	count       int64
	first, last time.Time
	requestID   string
}

// accessFailures gathers the refusals of the current window (see
// vault.AccessFailures). Its memory is bounded by sources keys plus one
// folded row per action.
type accessFailures struct {
	window  time.Duration
	sources int
	mu      sync.Mutex
	counts  map[failureKey]*failureCount
	folded  map[vault.Action]*failureCount // sources past the cap
	timer   *time.Timer                    // ends the current window; nil when nothing is pending
	commit  groupCommit[[]vault.AuditEvent]
}

// RecordAccessFailure counts f in the current window's row of its source
// and returns at once; the window's rows are written when it ends (see
// vault.AccessFailures). A requested id holding a card number is dropped.
func (s *Service) RecordAccessFailure(ctx context.Context, f vault.AccessFailure) {
	k := failureKey{action: f.Action, outcome: f.Outcome, reason: printable(f.Reason, maxRequestedID),
		route: printable(f.Route, 200), requestedID: requestedID(f.RequestedID), scope: f.Scope,
		tenant: f.TenantID, apiKey: f.APIKeyID, addr: printable(f.ClientAddr, 64)}
	now := s.clock()
	a := &s.failures
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts = make(map[failureKey]*failureCount)
		a.folded = make(map[vault.Action]*failureCount)
	}
	c := a.counts[k]
	if c == nil && len(a.counts) >= a.sources {
		c = a.folded[k.action]
		if c == nil {
			c = &failureCount{first: now}
			a.folded[k.action] = c
		}
	} else if c == nil {
		c = &failureCount{first: now, requestID: f.RequestID}
		a.counts[k] = c
	}
	c.count++
	c.last = now
	if a.timer == nil {
		a.timer = time.AfterFunc(a.window, func() { s.flushFailuresLogged() })
	}
}

// FlushAccessFailures writes the refusals counted so far without waiting
// for their window to end (at shutdown, and in tests). It returns (and
// logs) a domain error when the rows cannot be written.
func (s *Service) FlushAccessFailures(ctx context.Context) error {
	events := s.takeFailures()
	if len(events) == 0 {
		return nil
	}
	err := s.failures.commit.do(events, func(batches [][]vault.AuditEvent) error {
		var all []vault.AuditEvent
		for _, b := range batches {
			all = append(all, b...)
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		defer cancel()
		return s.insertAudits(wctx, s.db, all)
	})
	if err != nil {
		s.log.Warn("writing the audit rows of refused requests", "rows", len(events), "error", err)
	}
	return err
}

// flushFailuresLogged ends a window: its rows are written (a failure is
// logged), since no request waits for them.
func (s *Service) flushFailuresLogged() { _ = s.FlushAccessFailures(context.Background()) }

// takeFailures ends the current window and returns its audit rows.
func (s *Service) takeFailures() []vault.AuditEvent {
	a := &s.failures
	a.mu.Lock()
	counts, folded := a.counts, a.folded
	a.counts, a.folded = nil, nil
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.mu.Unlock()
	events := make([]vault.AuditEvent, 0, len(counts)+len(folded))
	for k, c := range counts {
		events = append(events, failureEvent(k, c))
	}
	for action, c := range folded {
		ev := failureEvent(failureKey{action: action, outcome: foldedOutcome(action)}, c)
		ev.Detail["other_sources"] = true
		events = append(events, ev)
	}
	return events
}

// failureEvent is the audit row of one source's refusals.
func failureEvent(k failureKey, c *failureCount) vault.AuditEvent {
	d := map[string]any{"count": c.count, "first_at": vault.Timestamp(c.first), "last_at": vault.Timestamp(c.last)}
	for name, v := range map[string]string{"reason": k.reason, "route": k.route, "requested_id": k.requestedID,
		"missing_scope": string(k.scope)} {
		if v != "" {
			d[name] = v
		}
	}
	return vault.AuditEvent{OccurredAt: c.first, TenantID: k.tenant, APIKeyID: k.apiKey, Action: k.action,
		RequestID: c.requestID, ClientAddr: k.addr, Outcome: k.outcome, Detail: d}
}

// foldedOutcome is the outcome of the folded row of action.
func foldedOutcome(action vault.Action) vault.Outcome {
	switch action {
	case vault.ActionAuthDenied, vault.ActionAccessThrottled:
		return vault.OutcomeDenied
	}
	return vault.OutcomeFailure
}

// requestedID is id as a row keeps it: at most maxRequestedID printable
// ASCII characters, and "[card number removed]" when it holds a card
// number outside a UUID (holdsPAN: a refused reveal of a token whose id
// passed for one lost the id in the trail).
func requestedID(id string) string {
	if id == "" {
		return ""
	}
	if holdsPAN(id) {
		return "[card number removed]"
	}
	return printable(id, maxRequestedID)
}

// printable returns s cut to max bytes with every byte outside printable
// ASCII replaced by '?': nothing a client sends can make the row's JSON
// unstorable (a NUL) or hide a card number behind other scripts' digits.
func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
