package httpapi

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// Waker is told when an import job was created, so that idle import
// workers of this process start at once (importer.Runner is one).
type Waker interface{ Wake() }

// WithImportWaker makes the server wake w after creating an import job.
func WithImportWaker(w Waker) Option {
	return func(s *Server) { s.importWaker = w }
}

// createImportRequest is the body of POST /tokens/imports.
type createImportRequest struct {
	Provider string `json:"provider" validate:"required"`
	Stripe   struct {
		APIKey string `json:"api_key" validate:"required"`
	} `json:"stripe"`
}

// importItemResponse is one line of an import's ledger.
type importItemResponse struct {
	Object        string     `json:"object"`
	Seq           int64      `json:"seq"`
	PaymentMethod string     `json:"payment_method"`
	Customer      string     `json:"customer"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastError     *string    `json:"last_error"`
	TokenID       *uuid.UUID `json:"token_id"`
	UpdatedAt     string     `json:"updated_at"`
}

func newImportItemResponse(it vault.ImportItem) importItemResponse {
	out := importItemResponse{Object: "import_item", Seq: it.Seq, PaymentMethod: it.PaymentMethod,
		Customer: it.Customer, Status: string(it.Status), Attempts: it.Attempts,
		LastError: optional(it.LastError), UpdatedAt: vault.Timestamp(it.UpdatedAt)}
	if it.TokenID != uuid.Nil {
		out.TokenID = &it.TokenID
	}
	return out
}

// createImport serves POST /tokens/imports: 202 and the job, which runs in
// the background. A multipart/form-data body is a card file upload
// (createFileImport); any other is the JSON of a Stripe import.
func (s *Server) createImport(c echo.Context) error {
	if isMultipart(c.Request()) {
		return s.createFileImport(c)
	}
	var req createImportRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	job, err := s.svc.CreateImport(c.Request().Context(), actor(c),
		vault.CreateImportInput{Provider: req.Provider, StripeAPIKey: card.NewSecret(req.Stripe.APIKey)})
	if err != nil {
		return err
	}
	if s.importWaker != nil {
		s.importWaker.Wake()
	}
	return c.JSON(http.StatusAccepted, job.Record())
}

// getImport serves GET /tokens/imports/:id.
func (s *Server) getImport(c echo.Context) error {
	id, err := importID(c)
	if err != nil {
		return err
	}
	job, err := s.svc.GetImport(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job.Record())
}

// listImports serves GET /tokens/imports?limit=&starting_after=<job id>.
func (s *Server) listImports(c echo.Context) error {
	p, err := readPaging(c, idCursor)
	if err != nil {
		return err
	}
	pg, err := s.svc.ListImports(c.Request().Context(), actor(c), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Jobs, pg.HasMore, vault.ImportJob.Record)
}

// abortImport serves POST /tokens/imports/:id/abort.
func (s *Server) abortImport(c echo.Context) error {
	id, err := importID(c)
	if err != nil {
		return err
	}
	job, err := s.svc.AbortImport(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job.Record())
}

// listImportItems serves GET /tokens/imports/:id/items?status=&limit=&starting_after=,
// the reconciliation ledger; starting_after is an item's seq.
func (s *Server) listImportItems(c echo.Context) error {
	id, err := importID(c)
	if err != nil {
		return err
	}
	p, err := readPaging(c, seqCursor)
	if err != nil {
		return err
	}
	pg, err := s.svc.ListImportItems(c.Request().Context(), actor(c), id, vault.ItemStatus(c.QueryParam("status")), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Items, pg.HasMore, newImportItemResponse)
}

// importID parses the :id path parameter; a malformed id is as unknown as a
// missing one.
func importID(c echo.Context) (uuid.UUID, error) {
	id, ok := canonicalID(c.Param("id"))
	if !ok {
		return uuid.Nil, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such import")
	}
	return id, nil
}
