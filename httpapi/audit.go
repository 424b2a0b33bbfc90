package httpapi

import (
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// auditEventResponse is one audit row as the API shows it.
type auditEventResponse struct {
	ID         int64          `json:"id"`
	OccurredAt string         `json:"occurred_at"`
	TenantID   *uuid.UUID     `json:"tenant_id"`
	APIKeyID   *uuid.UUID     `json:"api_key_id"`
	Action     string         `json:"action"`
	TokenID    *uuid.UUID     `json:"token_id"`
	RequestID  string         `json:"request_id"`
	ClientAddr string         `json:"client_addr"`
	Outcome    string         `json:"outcome"`
	Detail     map[string]any `json:"detail"`
}

func newAuditEventResponse(ev vault.AuditEvent) auditEventResponse {
	return auditEventResponse{
		ID: ev.ID, OccurredAt: ev.OccurredAt.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		TenantID: optionalID(ev.TenantID), APIKeyID: optionalID(ev.APIKeyID), Action: string(ev.Action),
		TokenID: optionalID(ev.TokenID), RequestID: ev.RequestID, ClientAddr: ev.ClientAddr,
		Outcome: string(ev.Outcome), Detail: ev.Detail,
	}
}

func optionalID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// listAuditEvents serves GET /audit-events?limit=&starting_after=<event id>.
func (s *Server) listAuditEvents(c echo.Context) error {
	p, err := readPaging(c, seqCursor)
	if err != nil {
		return err
	}
	pg, err := s.svc.ListAuditEvents(c.Request().Context(), actor(c), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Events, pg.HasMore, newAuditEventResponse)
}
