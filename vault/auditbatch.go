package vault

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// auditBatchTimeout bounds one batched audit insert, which runs on behalf
// of every request waiting for it.
const auditBatchTimeout = 10 * time.Second

// auditBatch commits the audit rows of concurrent requests together: one
// multi-row INSERT and one commit for every request that arrived while the
// previous batch was being written (group commit, done by the vault rather
// than left to PostgreSQL's WAL writer). A request returns only once its
// own row has committed, so what it answers is always audited durably. The
// first request to find no batch in flight writes one; when it is done it
// hands the writing to the first request that arrived meanwhile, so no
// request waits for more than the batch before its own and its own. The
// zero value is ready to use.
type auditBatch struct {
	mu       sync.Mutex
	pending  []*auditWaiter
	flushing bool
}

// auditWaiter is one request's row and how it learns the outcome.
type auditWaiter struct {
	ev   AuditEvent
	done chan struct{} // closed once the row's batch committed or failed
	lead chan struct{} // closed when this request is to write the next batch
	err  error
}

// auditDurably writes ev in a batch with other requests' events and returns
// once that batch has committed, or the error that failed it.
func (s *Service) auditDurably(ev AuditEvent) error {
	w := &auditWaiter{ev: ev, done: make(chan struct{}), lead: make(chan struct{})}
	b := &s.auditBatch
	b.mu.Lock()
	b.pending = append(b.pending, w)
	leader := !b.flushing
	b.flushing = true
	b.mu.Unlock()
	if !leader {
		// A waiter never gives up: the one that is handed the lead must take it.
		select {
		case <-w.done:
			return w.err
		case <-w.lead:
		}
	}
	b.mu.Lock()
	batch := b.pending
	b.pending = nil
	b.mu.Unlock()
	err := s.insertAuditBatch(batch)
	for _, x := range batch {
		x.err = err
		close(x.done)
	}
	b.mu.Lock()
	if len(b.pending) > 0 {
		close(b.pending[0].lead)
	} else {
		b.flushing = false
	}
	b.mu.Unlock()
	return w.err
}

// insertAuditBatch inserts the waiters' events in one statement.
func (s *Service) insertAuditBatch(batch []*auditWaiter) error {
	n := len(batch)
	at := make([]time.Time, n)
	tenants, keys, tokens := make([]*uuid.UUID, n), make([]*uuid.UUID, n), make([]*uuid.UUID, n)
	actions, requests, clients, outcomes, details := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, w := range batch {
		args, err := auditArgs(w.ev)
		if err != nil {
			return err
		}
		at[i], tenants[i], keys[i], actions[i] = args[0].(time.Time), args[1].(*uuid.UUID), args[2].(*uuid.UUID), args[3].(string)
		tokens[i], requests[i], clients[i], outcomes[i] = args[4].(*uuid.UUID), args[5].(string), args[6].(string), args[7].(string)
		details[i] = string(args[8].([]byte))
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditBatchTimeout)
	defer cancel()
	_, err := s.db.Exec(ctx, `
		INSERT INTO audit_events (`+auditInsertColumns+`)
		SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[],
		                     $6::text[], $7::text[], $8::text[], $9::jsonb[])`,
		at, tenants, keys, actions, tokens, requests, clients, outcomes, details)
	return dbError(err, "audit event")
}
