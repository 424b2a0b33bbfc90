package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// webhookRequest is the body of PUT /webhook.
type webhookRequest struct {
	URL string `json:"url" validate:"required"`
}

// webhookResponse is the tenant's webhook; Secret only in the answer to PUT
// and to a secret rotation, which also says until when the previous secret
// signs.
type webhookResponse struct {
	URL                     string  `json:"url"`
	CreatedAt               string  `json:"created_at"`
	Secret                  string  `json:"secret,omitempty"`
	PreviousSecretExpiresAt *string `json:"previous_secret_expires_at,omitempty"`
}

// rotateSecretRequest is the optional body of POST /webhook/secret/rotate.
type rotateSecretRequest struct {
	OverlapSeconds *int64 `json:"overlap_seconds"`
}

// webhookDeliveryResponse is one delivery attempt: whether it delivered,
// the class of the answer's status, and whether it will be retried. What
// the network said (refused, reset, timed out) and how long it took are
// not shown: they would make the vault a port scanner.
type webhookDeliveryResponse struct {
	ID          int64   `json:"id"`
	EventID     string  `json:"event_id"`
	EventType   string  `json:"event_type"`
	Attempt     int     `json:"attempt"`
	AttemptedAt string  `json:"attempted_at"`
	URL         string  `json:"url"`
	StatusClass *string `json:"status_class"`
	Error       string  `json:"error"`
	Outcome     string  `json:"outcome"`
}

func newWebhookDeliveryResponse(d vault.WebhookDelivery) webhookDeliveryResponse {
	r := webhookDeliveryResponse{ID: d.ID, EventID: d.EventID, EventType: string(d.EventType), Attempt: d.Attempt,
		AttemptedAt: timestamp(d.AttemptedAt), URL: d.URL, Error: d.Error, Outcome: string(d.Outcome)}
	if d.Status >= 100 && d.Status < 600 {
		class := strconv.Itoa(d.Status/100) + "xx"
		r.StatusClass = &class
	}
	return r
}

// putWebhook serves PUT /webhook {"url":…}: the webhook with its new signing
// secret, shown only here.
func (s *Server) putWebhook(c echo.Context) error {
	var req webhookRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	wh, secret, err := s.svc.SetWebhook(c.Request().Context(), actor(c), req.URL)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookResponse{URL: wh.URL, CreatedAt: timestamp(wh.CreatedAt), Secret: secret})
}

// rotateWebhookSecret serves POST /webhook/secret/rotate
// {"overlap_seconds":N}: a new signing secret, shown only here, while the
// previous one keeps signing for N seconds (default a day).
func (s *Server) rotateWebhookSecret(c echo.Context) error {
	var req rotateSecretRequest
	if err := decodeJSON(c, &req, true); err != nil {
		return err
	}
	overlap := vault.DefaultSecretOverlap
	if req.OverlapSeconds != nil {
		if *req.OverlapSeconds < 0 || *req.OverlapSeconds > int64(vault.MaxSecretOverlap/time.Second) {
			return vault.InvalidParam(vault.CodeParameterInvalid, "overlap_seconds", "overlap_seconds must be from 0 to 604800 (7 days)")
		}
		overlap = time.Duration(*req.OverlapSeconds) * time.Second
	}
	wh, secret, err := s.svc.RotateWebhookSecret(c.Request().Context(), actor(c), overlap)
	if err != nil {
		return err
	}
	res := webhookResponse{URL: wh.URL, CreatedAt: timestamp(wh.CreatedAt), Secret: secret}
	if !wh.PreviousSecretExpiresAt.IsZero() {
		res.PreviousSecretExpiresAt = optional(timestamp(wh.PreviousSecretExpiresAt))
	}
	return c.JSON(http.StatusOK, res)
}

// getWebhook serves GET /webhook.
func (s *Server) getWebhook(c echo.Context) error {
	wh, err := s.svc.GetWebhook(c.Request().Context(), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookResponse{URL: wh.URL, CreatedAt: timestamp(wh.CreatedAt)})
}

// deleteWebhook serves DELETE /webhook.
func (s *Server) deleteWebhook(c echo.Context) error {
	if err := s.svc.DeleteWebhook(c.Request().Context(), actor(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listWebhookDeliveries serves GET /webhook/deliveries?limit=&starting_after=<attempt id>.
func (s *Server) listWebhookDeliveries(c echo.Context) error {
	p, err := readPaging(c, seqCursor)
	if err != nil {
		return err
	}
	pg, err := s.svc.ListWebhookDeliveries(c.Request().Context(), actor(c), p.limit, p.after)
	if err != nil {
		return err
	}
	return respondList(c, pg.Deliveries, pg.HasMore, newWebhookDeliveryResponse)
}
