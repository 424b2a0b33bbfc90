package httpapi

import (
	"net/http"
	"strconv"

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
// the background.
func (s *Server) createImport(c echo.Context) error {
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

// listImports serves GET /tokens/imports?limit=&starting_after=.
func (s *Server) listImports(c echo.Context) error {
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	after, err := uuidCursor(c)
	if err != nil {
		return err
	}
	page, err := s.svc.ListImports(c.Request().Context(), actor(c), limit, after)
	if err != nil {
		return err
	}
	out := listResponse[vault.ImportRecord]{Object: "list", Data: make([]vault.ImportRecord, 0, len(page.Jobs)), HasMore: page.HasMore}
	for _, j := range page.Jobs {
		out.Data = append(out.Data, j.Record())
	}
	return c.JSON(http.StatusOK, out)
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
	limit, err := limitParam(c)
	if err != nil {
		return err
	}
	after, err := int64Cursor(c, "a seq from a previous page")
	if err != nil {
		return err
	}
	page, err := s.svc.ListImportItems(c.Request().Context(), actor(c), id, vault.ItemStatus(c.QueryParam("status")), limit, after)
	if err != nil {
		return err
	}
	out := listResponse[importItemResponse]{Object: "list", Data: make([]importItemResponse, 0, len(page.Items)), HasMore: page.HasMore}
	for _, it := range page.Items {
		out.Data = append(out.Data, newImportItemResponse(it))
	}
	return c.JSON(http.StatusOK, out)
}

// importID parses the :id path parameter; a malformed id is as unknown as a
// missing one.
func importID(c echo.Context) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return uuid.Nil, vault.Errorf(vault.KindNotFound, "resource_missing", "no such import")
	}
	return id, nil
}

// uuidCursor reads starting_after as an id, uuid.Nil when absent.
func uuidCursor(c echo.Context) (uuid.UUID, error) {
	v := c.QueryParam("starting_after")
	if v == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid", Param: "starting_after",
			Message: "starting_after must be an id from a previous page"}
	}
	return id, nil
}

// int64Cursor reads starting_after as a positive number id (an audit event,
// a delivery attempt, a ledger seq), 0 when absent. It returns a
// KindBadRequest error whose message names what the id should be.
func int64Cursor(c echo.Context, what string) (int64, error) {
	v := c.QueryParam("starting_after")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, &vault.Error{Kind: vault.KindBadRequest, Code: "parameter_invalid", Param: "starting_after",
			Message: "starting_after must be " + what}
	}
	return n, nil
}
