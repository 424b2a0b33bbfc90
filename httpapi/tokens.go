package httpapi

import (
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// tokenizeRequest is the body Stripe's forward API sends to /cde-import (and
// a merchant to /tokens): card fields as strings or numbers, and metadata
// whose business_key is the idempotency key; other metadata keys are kept as
// non-sensitive metadata.
type tokenizeRequest struct {
	Metadata map[string]string `json:"metadata" validate:"max=51"`
	Card     *cardRequest      `json:"card" validate:"required"`
}

type cardRequest struct {
	Number   flexString `json:"number"`
	ExpMonth flexString `json:"exp_month"`
	ExpYear  flexString `json:"exp_year"`
	CVC      flexString `json:"cvc"`
	Name     flexString `json:"name"`
}

// input splits business_key out of the metadata.
func (r tokenizeRequest) input() vault.TokenizeInput {
	in := vault.TokenizeInput{Card: card.CardInput{
		Number: string(r.Card.Number), ExpMonth: string(r.Card.ExpMonth), ExpYear: string(r.Card.ExpYear),
		CVC: string(r.Card.CVC), Name: string(r.Card.Name),
	}}
	in.Metadata = make(map[string]string, len(r.Metadata))
	for k, v := range r.Metadata {
		if k == "business_key" {
			in.BusinessKey = v
			continue
		}
		in.Metadata[k] = v
	}
	return in
}

// revealResponse is a detokenized card.
type revealResponse struct {
	ID          uuid.UUID    `json:"id"`
	BusinessKey *string      `json:"business_key"`
	Card        revealedCard `json:"card"`
}

type revealedCard struct {
	Number   string  `json:"number"`
	ExpMonth int     `json:"exp_month"`
	ExpYear  int     `json:"exp_year"`
	Name     *string `json:"name"`
	CVC      *string `json:"cvc"`
}

type detokenizeRequest struct {
	Reason string `json:"reason" validate:"max=500"`
}

// createToken serves POST /cde-import and POST /tokens: 201 for a new token,
// 200 when the business key already had one.
func (s *Server) createToken(c echo.Context) error {
	var req tokenizeRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	tok, created, err := s.svc.Tokenize(c.Request().Context(), actor(c), req.input())
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, tok.Record())
}

// getToken serves GET /tokens/:id.
func (s *Server) getToken(c echo.Context) error {
	id, err := tokenID(c)
	if err != nil {
		return err
	}
	tok, err := s.svc.GetToken(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, tok.Record())
}

// Query parameters of GET /tokens.
const (
	paramBusinessKey = "business_key"
	paramFingerprint = "fingerprint"
)

// listTokens serves GET /tokens?business_key=&fingerprint=&limit=&starting_after=<token id>.
func (s *Server) listTokens(c echo.Context) error {
	p, err := readPaging(c, idCursor)
	if err != nil {
		return err
	}
	bk := c.QueryParam(paramBusinessKey)
	if !utf8.ValidString(bk) || strings.ContainsRune(bk, 0) {
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid, Param: paramBusinessKey,
			Message: "business_key must be valid UTF-8 without NUL characters"}
	}
	in := vault.ListTokensParams{BusinessKey: bk, Limit: p.limit, StartingAfter: p.after}
	if v := c.QueryParam(paramFingerprint); v != "" {
		if in.Fingerprint, err = vault.ParseFingerprint(v); err != nil {
			return err
		}
	}
	pg, err := s.svc.ListTokens(c.Request().Context(), actor(c), in)
	if err != nil {
		return err
	}
	return respondList(c, pg.Tokens, pg.HasMore, vault.Token.Record)
}

// searchRequest is the body of POST /tokens/search: the card number to look
// for, which is fingerprinted and never kept.
type searchRequest struct {
	Number flexString `json:"number"`
}

// searchTokens serves POST /tokens/search?limit=&starting_after=<token id>
// {"number":…}: the masked tokens holding that card, in the list shape.
func (s *Server) searchTokens(c echo.Context) error {
	p, err := readPaging(c, idCursor)
	if err != nil {
		return err
	}
	var req searchRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	pg, err := s.svc.SearchTokens(c.Request().Context(), actor(c), card.NewSecret(string(req.Number)), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Tokens, pg.HasMore, vault.Token.Record)
}

// detokenize serves POST /tokens/:id/detokenize with an optional reason.
func (s *Server) detokenize(c echo.Context) error {
	id, err := tokenID(c)
	if err != nil {
		return err
	}
	var req detokenizeRequest
	if err := decodeJSON(c, &req, true); err != nil {
		return err
	}
	r, err := s.svc.Detokenize(c.Request().Context(), actor(c), id, req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newRevealResponse(r))
}

func newRevealResponse(r vault.Revealed) revealResponse {
	card := revealedCard{Number: r.Card.PAN.Reveal(), ExpMonth: r.Card.Expiry.Month,
		ExpYear: r.Card.Expiry.Year, Name: optional(r.Card.Name)}
	if !r.Card.CVC.IsZero() {
		card.CVC = optional(r.Card.CVC.Reveal())
	}
	return revealResponse{ID: r.Token.ID, BusinessKey: optional(r.Token.BusinessKey), Card: card}
}

// deleteToken serves DELETE /tokens/:id.
func (s *Server) deleteToken(c echo.Context) error {
	id, err := tokenID(c)
	if err != nil {
		return err
	}
	if err := s.svc.DeleteToken(c.Request().Context(), actor(c), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listTokenVersions serves GET /tokens/:id/versions: the masked cards that
// updates replaced, newest first, as one list.
func (s *Server) listTokenVersions(c echo.Context) error {
	id, err := tokenID(c)
	if err != nil {
		return err
	}
	vs, err := s.svc.ListTokenVersions(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return respondList(c, vs, false, vault.TokenVersion.Record)
}

// tokenID parses the :id path parameter; a malformed id is as unknown as a
// missing one (404), so ids cannot be probed by shape.
func tokenID(c echo.Context) (uuid.UUID, error) {
	id, ok := canonicalID(c.Param("id"))
	if !ok {
		return uuid.Nil, vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such token")
	}
	return id, nil
}

// optional maps "" to JSON null.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// timestamp formats t as RFC 3339 in UTC with second precision, as the
// Stripe-forward contract shows it.
func timestamp(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
