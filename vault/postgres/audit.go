package postgres

import (
	"context"
	"encoding/json"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// event returns an audit event for the actor, stamped with the service clock.
func (s *Service) event(a vault.Actor, action vault.Action, tokenID uuid.UUID, detail map[string]any) vault.AuditEvent {
	if a.Operator != "" {
		detail = withOperator(detail, a.Operator)
	}
	return vault.AuditEvent{
		OccurredAt: s.clock(), TenantID: a.TenantID, APIKeyID: a.APIKeyID,
		Action: action, TokenID: tokenID, RequestID: a.RequestID,
		ClientAddr: a.ClientAddr, Outcome: vault.OutcomeSuccess, Detail: detail,
	}
}

// auditArgs returns ev's columns in auditInsertColumns order.
func auditArgs(ev vault.AuditEvent) ([]any, error) {
	detail := []byte("{}")
	if ev.Detail != nil {
		var err error
		if detail, err = json.Marshal(ev.Detail); err != nil {
			return nil, vault.Internal(err)
		}
	}
	return []any{ev.OccurredAt, nullUUID(ev.TenantID), nullUUID(ev.APIKeyID), string(ev.Action),
		nullUUID(ev.TokenID), ev.RequestID, ev.ClientAddr, string(ev.Outcome), detail}, nil
}

// insertAudit writes ev with q, inside the caller's transaction when q is
// one, so that an action and its record commit together: when the audit
// row cannot be written the action fails. The row is written complete,
// chained and hashed (see auditlanes.go). q is a pgx.Tx, a connection
// inside a transaction, or the pool (then the row gets a transaction of
// its own). It returns a domain error when the chain key cannot be had and
// the driver error when the database fails.
func (s *Service) insertAudit(ctx context.Context, q querier, ev vault.AuditEvent) error {
	return s.insertAudits(ctx, q, []vault.AuditEvent{ev})
}

// insertAudits is insertAudit for many events, chained in the order given,
// in one statement.
func (s *Service) insertAudits(ctx context.Context, q querier, events []vault.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	if _, ok := q.(*pgxpool.Pool); ok {
		return s.inTx(ctx, "audit event", func(tx pgx.Tx) error { return s.insertAudits(ctx, tx, events) })
	}
	w, err := s.prepareAudit(ctx, q, writerLanes, events)
	if err != nil {
		return err
	}
	return w.exec(ctx, q, s.clock())
}

// nullUUID maps uuid.Nil to SQL NULL.
func nullUUID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// ListAuditEvents returns the actor's tenant's audit events newest first,
// after the event id startingAfter when it is non-zero, and audits the
// listing in the same transaction (after reading, so a page never shows its
// own audit row). It returns a KindBadRequest error for a limit outside
// 1–100, and a domain error when the database fails.
func (s *Service) ListAuditEvents(ctx context.Context, a vault.Actor, limit int, startingAfter int64) (vault.AuditPage, error) {
	return s.FindAuditEvents(ctx, a, vault.AuditFilter{}, limit, startingAfter)
}

// FindAuditEvents is ListAuditEvents narrowed to the events that match f;
// the listing's audit row names the filter. Its errors are
// ListAuditEvents's.
func (s *Service) FindAuditEvents(ctx context.Context, a vault.Actor, f vault.AuditFilter, limit int, startingAfter int64) (vault.AuditPage, error) {
	if err := checkLimit(limit); err != nil {
		return vault.AuditPage{}, err
	}
	var page vault.AuditPage
	err := s.inTx(ctx, "audit event", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, occurred_at, tenant_id, api_key_id, action, token_id,
			       request_id, client_addr, outcome, detail
			FROM audit_events
			WHERE tenant_id = $1 AND ($2::bigint = 0 OR id < $2)
			  AND ($4::text = '' OR action = $4) AND ($5::uuid IS NULL OR token_id = $5)
			ORDER BY id DESC LIMIT $3`, a.TenantID, startingAfter, limit+1, string(f.Action), nullUUID(f.TokenID))
		if err != nil {
			return err
		}
		if page.Events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.AuditEvent, error) { return scanAudit(r) }); err != nil {
			return err
		}
		if len(page.Events) > limit {
			page.Events, page.HasMore = page.Events[:limit], true
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionAuditList, uuid.Nil, auditListDetail(f, len(page.Events))))
	})
	if err != nil {
		return vault.AuditPage{}, err
	}
	return page, nil
}

// auditListDetail is the detail of a listing's audit row: the count, and
// the filter when there is one.
func auditListDetail(f vault.AuditFilter, count int) map[string]any {
	d := map[string]any{"count": count}
	if f.Action != "" {
		d["action"] = string(f.Action)
	}
	if f.TokenID != uuid.Nil {
		d["token_id"] = f.TokenID
	}
	return d
}

// VerifyTenantAudit verifies the actor's tenant's audit chain (see
// VerifyAudit) and audits the verification with its result. A broken chain
// is reported in the report, not as an error; the error is a domain error
// when the database fails.
func (s *Service) VerifyTenantAudit(ctx context.Context, a vault.Actor) (vault.AuditReport, error) {
	r, err := s.VerifyAudit(ctx, &a.TenantID)
	if err != nil {
		return r, err
	}
	ev := s.event(a, vault.ActionAuditVerify, uuid.Nil, map[string]any{"ok": r.OK, "rows": r.Rows,
		"unchained": r.Unchained, "breaks": len(r.Breaks)})
	return r, dbError(s.insertAudit(ctx, s.db, ev), "audit event")
}

func scanAudit(row interface{ Scan(...any) error }) (vault.AuditEvent, error) {
	var ev vault.AuditEvent
	var tenant, key, token *uuid.UUID
	var action, outcome string
	var detail []byte
	err := row.Scan(&ev.ID, &ev.OccurredAt, &tenant, &key, &action, &token,
		&ev.RequestID, &ev.ClientAddr, &outcome, &detail)
	if err != nil {
		return ev, err
	}
	ev.Action, ev.Outcome = vault.Action(action), vault.Outcome(outcome)
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
		return vault.InvalidLimit()
	}
	return nil
}
