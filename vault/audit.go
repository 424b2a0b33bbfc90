package vault

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Action names what an audit event records.
type Action string

// The audited actions.
const (
	ActionTenantCreate Action = "tenant.create"
	ActionKeysetCreate Action = "keyset.create"
	ActionAPIKeyCreate Action = "api_key.create"
	ActionAPIKeyRevoke Action = "api_key.revoke"
	ActionAuthFailed   Action = "auth.failed"
	ActionAuthDenied   Action = "auth.denied"
	ActionTokenCreate  Action = "token.create"
	ActionTokenUpdate  Action = "token.update"
	ActionTokenRead    Action = "token.read"
	ActionTokenList    Action = "token.list"
	ActionTokenReveal  Action = "token.reveal"
	ActionTokenDelete  Action = "token.delete"
	ActionCVCPurge     Action = "cvc.purge"
	ActionAuditList    Action = "audit.list"
)

// Outcome is how an audited action ended.
type Outcome string

// The outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomeDenied  Outcome = "denied"
)

// AuditEvent is one row of the audit trail. It never holds card data:
// Detail carries only ids, counts, field names and free-text reasons that the
// vault has checked for card numbers.
type AuditEvent struct {
	ID         int64
	OccurredAt time.Time
	TenantID   uuid.UUID // uuid.Nil when unknown (a failed authentication)
	APIKeyID   uuid.UUID
	Action     Action
	TokenID    uuid.UUID
	RequestID  string
	ClientAddr string
	Outcome    Outcome
	Detail     map[string]any
}

// event returns an audit event for the actor, stamped with the service clock.
func (s *Service) event(a Actor, action Action, tokenID uuid.UUID, detail map[string]any) AuditEvent {
	return AuditEvent{
		OccurredAt: s.clock(), TenantID: a.TenantID, APIKeyID: a.APIKeyID,
		Action: action, TokenID: tokenID, RequestID: a.RequestID,
		ClientAddr: a.ClientAddr, Outcome: OutcomeSuccess, Detail: detail,
	}
}

// insertAuditSQL inserts one audit event. The chain columns stay NULL: the
// background chainer links the row shortly after its transaction commits
// (see auditchain.go), so that actions of one tenant never queue on a
// chain lock.
const insertAuditSQL = `
		INSERT INTO audit_events (occurred_at, tenant_id, api_key_id, action, token_id,
		                          request_id, client_addr, outcome, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

// auditArgs returns the arguments of insertAuditSQL for ev.
func auditArgs(ev AuditEvent) ([]any, error) {
	detail := []byte("{}")
	if ev.Detail != nil {
		var err error
		if detail, err = json.Marshal(ev.Detail); err != nil {
			return nil, Internal(err)
		}
	}
	return []any{ev.OccurredAt, nullUUID(ev.TenantID), nullUUID(ev.APIKeyID), string(ev.Action),
		nullUUID(ev.TokenID), ev.RequestID, ev.ClientAddr, string(ev.Outcome), detail}, nil
}

// insertAudit writes ev with q, inside the caller's transaction when q is
// one, so that an action and its record commit together: when the audit
// row cannot be written the action fails.
func insertAudit(ctx context.Context, q querier, ev AuditEvent) error {
	args, err := auditArgs(ev)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, insertAuditSQL, args...)
	return err
}

// insertAuditID is insertAudit returning the new row's id.
func insertAuditID(ctx context.Context, q querier, ev AuditEvent) (int64, error) {
	args, err := auditArgs(ev)
	if err != nil {
		return 0, err
	}
	var id int64
	err = q.QueryRow(ctx, insertAuditSQL+` RETURNING id`, args...).Scan(&id)
	return id, err
}

// nullUUID maps uuid.Nil to SQL NULL.
func nullUUID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// AuditPage is one page of audit events, newest first.
type AuditPage struct {
	Events  []AuditEvent
	HasMore bool
}

// ListAuditEvents returns the actor's tenant's audit events newest first,
// after the event id startingAfter when it is non-zero, and audits the
// listing in the same transaction (after reading, so a page never shows its
// own audit row). It returns a KindBadRequest error for a limit outside
// 1–100, and a domain error when the database fails.
func (s *Service) ListAuditEvents(ctx context.Context, a Actor, limit int, startingAfter int64) (AuditPage, error) {
	if err := checkLimit(limit); err != nil {
		return AuditPage{}, err
	}
	var page AuditPage
	err := s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, occurred_at, tenant_id, api_key_id, action, token_id,
			       request_id, client_addr, outcome, detail
			FROM audit_events
			WHERE tenant_id = $1 AND ($2::bigint = 0 OR id < $2)
			ORDER BY id DESC LIMIT $3`, a.TenantID, startingAfter, limit+1)
		if err != nil {
			return err
		}
		if page.Events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEvent, error) { return scanAudit(r) }); err != nil {
			return err
		}
		if len(page.Events) > limit {
			page.Events, page.HasMore = page.Events[:limit], true
		}
		return insertAudit(ctx, tx, s.event(a, ActionAuditList, uuid.Nil, map[string]any{"count": len(page.Events)}))
	})
	if err != nil {
		return AuditPage{}, err
	}
	return page, nil
}

func scanAudit(row interface{ Scan(...any) error }) (AuditEvent, error) {
	var ev AuditEvent
	var tenant, key, token *uuid.UUID
	var action, outcome string
	var detail []byte
	err := row.Scan(&ev.ID, &ev.OccurredAt, &tenant, &key, &action, &token,
		&ev.RequestID, &ev.ClientAddr, &outcome, &detail)
	if err != nil {
		return ev, err
	}
	ev.Action, ev.Outcome = Action(action), Outcome(outcome)
	ev.TenantID, ev.APIKeyID, ev.TokenID = derefUUID(tenant), derefUUID(key), derefUUID(token)
	ev.OccurredAt = ev.OccurredAt.UTC()
	return ev, json.Unmarshal(detail, &ev.Detail)
}

func derefUUID(id *uuid.UUID) uuid.UUID {
	if id == nil {
		return uuid.Nil
	}
	return *id
}

// checkLimit returns a KindBadRequest error unless 1 ≤ limit ≤ 100.
func checkLimit(limit int) error {
	if limit < 1 || limit > 100 {
		return InvalidLimit()
	}
	return nil
}
