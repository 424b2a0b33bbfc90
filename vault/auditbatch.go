package vault

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// auditBatchTimeout bounds one batched audit insert, which runs on behalf
// of every request waiting for it.
const auditBatchTimeout = 10 * time.Second

// auditBatch commits the audit rows of concurrent reads together (see
// groupCommit).
type auditBatch = groupCommit[AuditEvent]

// auditDurably writes ev in a batch with other requests' events and returns
// once that batch has committed, or the error that failed it.
func (s *Service) auditDurably(ev AuditEvent) error {
	return s.auditBatch.do(ev, s.insertAuditBatch)
}

// insertAuditBatch inserts events in one statement.
func (s *Service) insertAuditBatch(batch []AuditEvent) error {
	n := len(batch)
	at := make([]time.Time, n)
	tenants, keys, tokens := make([]*uuid.UUID, n), make([]*uuid.UUID, n), make([]*uuid.UUID, n)
	actions, requests, clients, outcomes, details := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, ev := range batch {
		args, err := auditArgs(ev)
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
