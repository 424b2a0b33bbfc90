package postgres

import (
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// auditColumns returns the columns of events as nine arrays, in
// auditInsertColumns order, for a statement that unnests them into many
// audit rows at once.
func auditColumns(events []vault.AuditEvent) ([]any, error) {
	n := len(events)
	at := make([]time.Time, n)
	tenants, keys, tokens := make([]*uuid.UUID, n), make([]*uuid.UUID, n), make([]*uuid.UUID, n)
	actions, requests, clients, outcomes, details := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, ev := range events {
		args, err := auditArgs(ev)
		if err != nil {
			return nil, err
		}
		at[i], tenants[i], keys[i], actions[i] = args[0].(time.Time), args[1].(*uuid.UUID), args[2].(*uuid.UUID), args[3].(string)
		tokens[i], requests[i], clients[i], outcomes[i] = args[4].(*uuid.UUID), args[5].(string), args[6].(string), args[7].(string)
		details[i] = string(args[8].([]byte))
	}
	return []any{at, tenants, keys, actions, tokens, requests, clients, outcomes, details}, nil
}
