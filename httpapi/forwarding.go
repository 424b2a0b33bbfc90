package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// The forwarding API: the tenant's destination allow-list
// (/forwarding/destinations, /forwarding/presets) and Stripe's
// ForwardingRequest API (/v1/forwarding/requests).

// destinationRequest is the body of POST /forwarding/destinations: a preset
// with the merchant's URL, or a custom destination.
type destinationRequest struct {
	URL               string             `json:"url"`
	Preset            string             `json:"preset"`
	Format            string             `json:"format,omitempty"`
	Fields            json.RawMessage    `json:"fields,omitempty"`
	SecretHeaders     []string           `json:"secret_headers,omitempty" validate:"max=16"`
	TimeoutMs         int                `json:"timeout_ms,omitempty"`
	Signature         *signatureRequest  `json:"signature,omitempty"`
	RemoteTokenPath   string             `json:"remote_token_path,omitempty"`
	ClientCertificate *clientCertRequest `json:"client_certificate,omitempty"`
}

// signatureRequest is a request-signature rule with its HMAC key.
type signatureRequest struct {
	Encoding string `json:"encoding"`
	Header   string `json:"header,omitempty"`
	Secret   string `json:"secret,omitempty"`
}

// clientCertRequest is an mTLS client certificate and its private key, PEM.
type clientCertRequest struct {
	Certificate string `json:"certificate"`
	PrivateKey  string `json:"private_key"`
}

// input returns the destination input: the settings other than URL, preset
// and secrets travel as the destination's JSON configuration.
func (r destinationRequest) input() (vault.DestinationInput, error) {
	cfg := struct {
		Format          string            `json:"format,omitempty"`
		Fields          json.RawMessage   `json:"fields,omitempty"`
		SecretHeaders   []string          `json:"secret_headers,omitempty"`
		TimeoutMs       int               `json:"timeout_ms,omitempty"`
		Signature       *signatureRequest `json:"signature,omitempty"`
		RemoteTokenPath string            `json:"remote_token_path,omitempty"`
	}{r.Format, r.Fields, r.SecretHeaders, r.TimeoutMs, nil, r.RemoteTokenPath}
	in := vault.DestinationInput{URL: r.URL, Preset: r.Preset}
	if r.Signature != nil {
		cfg.Signature = &signatureRequest{Encoding: r.Signature.Encoding, Header: r.Signature.Header}
		in.SignatureSecret = card.NewSecret(r.Signature.Secret)
	}
	if r.ClientCertificate != nil {
		in.ClientCertificatePEM, in.ClientKeyPEM = r.ClientCertificate.Certificate, card.NewSecret(r.ClientCertificate.PrivateKey)
	}
	var err error
	in.Config, err = json.Marshal(cfg)
	return in, err
}

// destinationResponse is a destination as the API shows it: its
// configuration, and only whether it holds secrets.
type destinationResponse struct {
	ID     string  `json:"id"`
	Object string  `json:"object"`
	Preset *string `json:"preset"`
	forwarding.Destination
	SignatureKey      bool            `json:"signature_key"`
	ClientCertificate *clientCertInfo `json:"client_certificate"`
	CreatedAt         string          `json:"created_at"`
}

// clientCertInfo says a destination presents a client certificate, and until when.
type clientCertInfo struct {
	ExpiresAt *string `json:"expires_at"`
}

func newDestinationResponse(d vault.ForwardDestination) destinationResponse {
	r := destinationResponse{ID: d.ID, Object: "forwarding.destination", Preset: optional(d.Preset),
		SignatureKey: d.HasSignatureKey, CreatedAt: timestamp(d.CreatedAt)}
	_ = json.Unmarshal(d.Config, &r.Destination) // the vault wrote it from this very type
	r.URL = d.URL
	if d.HasClientCert {
		r.ClientCertificate = &clientCertInfo{}
		if d.ClientCertExpires != nil {
			at := timestamp(*d.ClientCertExpires)
			r.ClientCertificate.ExpiresAt = &at
		}
	}
	return r
}

// createDestination serves POST /forwarding/destinations.
func (s *Server) createDestination(c echo.Context) error {
	var req destinationRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	in, err := req.input()
	if err != nil {
		return vault.Internal(err)
	}
	d, err := s.svc.CreateDestination(c.Request().Context(), actor(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, newDestinationResponse(d))
}

// getDestination serves GET /forwarding/destinations/:id.
func (s *Server) getDestination(c echo.Context) error {
	d, err := s.svc.GetDestination(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newDestinationResponse(d))
}

// listDestinations serves GET /forwarding/destinations: every destination,
// oldest first.
func (s *Server) listDestinations(c echo.Context) error {
	ds, err := s.svc.ListDestinations(c.Request().Context(), actor(c))
	if err != nil {
		return err
	}
	return respondList(c, ds, false, newDestinationResponse)
}

// deleteDestination serves DELETE /forwarding/destinations/:id.
func (s *Server) deleteDestination(c echo.Context) error {
	if err := s.svc.DeleteDestination(c.Request().Context(), actor(c), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// listPresets serves GET /forwarding/presets: the ready destinations for
// common processors, with their field maps. They are data shipped with the
// vault, the same for every tenant.
func (s *Server) listPresets(c echo.Context) error {
	b, err := json.Marshal(page[forwarding.Preset]{Object: "list", Data: forwarding.Presets()})
	if err != nil {
		return vault.Internal(err)
	}
	// Longer than net/http buffers before it chunks: say the length, so
	// that HEAD answers it like GET.
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(b)))
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// forwardingRequestResponse is Stripe's forwarding.request object, plus
// status and failure_code, which say whether the destination answered.
type forwardingRequestResponse struct {
	ID              string                   `json:"id"`
	Object          string                   `json:"object"`
	Created         int64                    `json:"created"`
	Livemode        bool                     `json:"livemode"`
	Metadata        map[string]string        `json:"metadata"`
	PaymentMethod   string                   `json:"payment_method"`
	Replacements    []string                 `json:"replacements"`
	RequestContext  *forwardContext          `json:"request_context"`
	RequestDetails  forwardedRequestJSON     `json:"request_details"`
	ResponseDetails *vault.ForwardedResponse `json:"response_details"`
	URL             string                   `json:"url"`
	Status          string                   `json:"status"`
	FailureCode     *string                  `json:"failure_code"`
	FailureMessage  *string                  `json:"failure_message"`
}

type forwardContext struct {
	DestinationDuration  int64  `json:"destination_duration"`
	DestinationIPAddress string `json:"destination_ip_address"`
}

type forwardedRequestJSON struct {
	vault.ForwardedRequest
	HTTPMethod string `json:"http_method"`
}

func newForwardingRequestResponse(r vault.ForwardingRequest) forwardingRequestResponse {
	out := forwardingRequestResponse{ID: r.ID, Object: "forwarding.request", Created: r.CreatedAt.Unix(),
		Metadata: r.Metadata, PaymentMethod: r.PaymentMethod, Replacements: r.Replacements, URL: r.URL,
		RequestDetails:  forwardedRequestJSON{ForwardedRequest: r.Request, HTTPMethod: http.MethodPost},
		ResponseDetails: r.Response, Status: string(r.Status), FailureCode: optional(r.ErrorCode),
		FailureMessage: optional(r.FailureMessage())}
	if r.Status != vault.ForwardPending {
		out.RequestContext = &forwardContext{DestinationDuration: r.DestinationDuration.Milliseconds(),
			DestinationIPAddress: r.DestinationIP}
	}
	return out
}

// createForward serves POST /v1/forwarding/requests: the card goes to the
// destination and the answer is the redacted record, 200 whatever the
// destination's status; 502 or 504 when it could not be reached.
func (s *Server) createForward(c echo.Context) error {
	in, err := decodeForward(c)
	if err != nil {
		return err
	}
	c.Set(ctxRequestedID, in.PaymentMethod) // audited if refused (auditRefusals)
	r, err := s.svc.Forward(c.Request().Context(), actor(c), in)
	if err != nil {
		return err
	}
	if r.Replayed {
		c.Response().Header().Set(HeaderIdempotentReplayed, "true")
	}
	return c.JSON(http.StatusOK, newForwardingRequestResponse(r))
}

// getForward serves GET /v1/forwarding/requests/:id.
func (s *Server) getForward(c echo.Context) error {
	id := c.Param("id")
	if !strings.HasPrefix(id, "fwdreq_") {
		return vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such forwarding request")
	}
	r, err := s.svc.GetForwardingRequest(c.Request().Context(), actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newForwardingRequestResponse(r))
}

// listForwards serves GET /v1/forwarding/requests: Stripe's list of
// forwarding.request objects, newest first.
func (s *Server) listForwards(c echo.Context) error {
	p, err := forwardListParams(c)
	if err != nil {
		return err
	}
	page, err := s.svc.ListForwardingRequests(c.Request().Context(), actor(c), p)
	if err != nil {
		return err
	}
	return respondList(c, page.Requests, page.HasMore, newForwardingRequestResponse)
}
