package httpapi

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// WithExportWaker makes the server wake w after creating an export job.
func WithExportWaker(w Waker) Option {
	return func(s *Server) { s.exportWaker = w }
}

// createExportRequest is the body of POST /tokens/exports.
type createExportRequest struct {
	Destination string `json:"destination" validate:"required"`
	URL         string `json:"url"`
	Filter      struct {
		BusinessKeyPrefix string     `json:"business_key_prefix"`
		CreatedAfter      *time.Time `json:"created_after"`
	} `json:"filter"`
	Headers   []vault.ForwardHeader `json:"headers" validate:"max=10"`
	RateLimit float64               `json:"rate_limit"`
}

// exportItemResponse is one line of an export's ledger: the mapping of a
// local token to the other vault's token id.
type exportItemResponse struct {
	Object      string    `json:"object"`
	Seq         int64     `json:"seq"`
	TokenID     uuid.UUID `json:"token_id"`
	BusinessKey *string   `json:"business_key"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	LastError   *string   `json:"last_error"`
	RemoteID    *string   `json:"remote_id"`
	UpdatedAt   string    `json:"updated_at"`
}

func newExportItemResponse(it vault.ExportItem) exportItemResponse {
	return exportItemResponse{Object: "export_item", Seq: it.Seq, TokenID: it.TokenID, BusinessKey: optional(it.BusinessKey),
		Status: string(it.Status), Attempts: it.Attempts, LastError: optional(it.LastError), RemoteID: optional(it.RemoteID),
		UpdatedAt: vault.Timestamp(it.UpdatedAt)}
}

// createExport serves POST /tokens/exports: 202 and the job, which runs in
// the background.
func (s *Server) createExport(c echo.Context) error {
	var req createExportRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	job, err := s.svc.CreateExport(c.Request().Context(), actor(c), vault.CreateExportInput{
		DestinationID: req.Destination, URL: req.URL, Headers: req.Headers, RateLimit: req.RateLimit,
		Filter: vault.ExportFilter{BusinessKeyPrefix: req.Filter.BusinessKeyPrefix, CreatedAfter: req.Filter.CreatedAfter}})
	if err != nil {
		return err
	}
	if s.exportWaker != nil {
		s.exportWaker.Wake()
	}
	return c.JSON(http.StatusAccepted, job.Record())
}

// getExport serves GET /tokens/exports/:id.
func (s *Server) getExport(c echo.Context) error {
	id, err := exportID(c)
	if err != nil {
		return err
	}
	job, err := s.svc.GetExport(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job.Record())
}

// listExports serves GET /tokens/exports?limit=&starting_after=<job id>.
func (s *Server) listExports(c echo.Context) error {
	p, err := readPaging(c, idCursor)
	if err != nil {
		return err
	}
	pg, err := s.svc.ListExports(c.Request().Context(), actor(c), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Jobs, pg.HasMore, vault.ExportJob.Record)
}

// abortExport serves POST /tokens/exports/:id/abort.
func (s *Server) abortExport(c echo.Context) error {
	id, err := exportID(c)
	if err != nil {
		return err
	}
	job, err := s.svc.AbortExport(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job.Record())
}

// listExportItems serves GET /tokens/exports/:id/items?status=&limit=&starting_after=,
// the ledger and mapping; starting_after is an item's seq.
func (s *Server) listExportItems(c echo.Context) error {
	id, err := exportID(c)
	if err != nil {
		return err
	}
	p, err := readPaging(c, seqCursor)
	if err != nil {
		return err
	}
	pg, err := s.svc.ListExportItems(c.Request().Context(), actor(c), id, vault.ItemStatus(c.QueryParam("status")), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Items, pg.HasMore, newExportItemResponse)
}

// exportMapping serves GET /tokens/exports/:id/mapping: the export's
// mapping as CSV (vault.ExportMappingColumns), one line per token.
func (s *Server) exportMapping(c echo.Context) error {
	id, err := exportID(c)
	if err != nil {
		return err
	}
	return s.answerCSV(c, vault.ExportMappingColumns, "export_id", id, func(line func([]string) error) error {
		return s.svc.ExportMapping(c.Request().Context(), actor(c), id, func(it vault.ExportItem) error { return line(it.MappingRecord()) })
	})
}

// exportID parses the :id path parameter; a malformed id is as unknown as a
// missing one.
func exportID(c echo.Context) (uuid.UUID, error) {
	id, ok := canonicalID(c.Param("id"))
	if !ok {
		return uuid.Nil, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such export")
	}
	return id, nil
}
