package httpapi

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
)

// KeyConfig is what the key endpoints need to know about the deployment.
type KeyConfig struct {
	RootKEKURI   string        // the deployment's root KEK; never shown to API clients
	Cryptoperiod time.Duration // keys older than this are flagged overdue
	Propagation  time.Duration // how long a rotation waits for every replica to reload keys
}

// WithKeyConfig configures the key-management endpoints.
func WithKeyConfig(k KeyConfig) Option {
	return func(s *Server) { s.keys = k }
}

// keyJobResponse is a re-encryption job.
type keyJobResponse struct {
	ID         uuid.UUID `json:"id"`
	Kind       string    `json:"kind"`
	Status     string    `json:"status"`
	Total      int64     `json:"total"`
	Done       int64     `json:"done"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  string    `json:"created_at"`
	StartedAt  *string   `json:"started_at"`
	FinishedAt *string   `json:"finished_at"`
}

func newKeyJobResponse(j vault.KeyJob) keyJobResponse {
	return keyJobResponse{ID: j.ID, Kind: j.Kind, Status: j.Status, Total: j.Total, Done: j.Done, Error: j.Error,
		CreatedAt: timestamp(j.CreatedAt), StartedAt: optionalTime(j.StartedAt), FinishedAt: optionalTime(j.FinishedAt)}
}

func optionalTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timestamp(*t)
	return &s
}

type retireRequest struct {
	KeyID   uint32 `json:"key_id" validate:"required"`
	Destroy bool   `json:"destroy"`
}

type rotateResponse struct {
	KeyID uint32 `json:"key_id"`
}

// keyStatus serves GET /keys: the caller's tenant's key versions.
func (s *Server) keyStatus(c echo.Context) error {
	// The root KEK URI (an AWS ARN names the account) is the operator's to
	// see, with `cardvault keys status`; a tenant's key manager is not.
	r, err := s.svc.KeyReport(c.Request().Context(), actor(c), []uuid.UUID{actor(c).TenantID}, "", s.keys.Cryptoperiod)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// rotateKey serves POST /keys/rotate: returns once every replica encrypts
// with the new key.
func (s *Server) rotateKey(c echo.Context) error {
	id, err := s.svc.RotateDataKey(c.Request().Context(), actor(c), s.keys.Propagation)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rotateResponse{KeyID: id})
}

// startReencrypt serves POST /keys/reencrypt: 202 and the job (the running
// one when there is one already).
func (s *Server) startReencrypt(c echo.Context) error {
	job, _, err := s.svc.StartReencrypt(c.Request().Context(), actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, newKeyJobResponse(job))
}

// rotateFingerprintKey serves POST /keys/fingerprint/rotate: rotates the
// fingerprint keyset (returning once every replica fingerprints with the
// new key) and answers 202 with the refingerprint job.
func (s *Server) rotateFingerprintKey(c echo.Context) error {
	job, err := s.svc.RotateFingerprintKey(c.Request().Context(), actor(c), s.keys.Propagation)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, newKeyJobResponse(job))
}

// getKeyJob serves GET /keys/jobs/:id.
func (s *Server) getKeyJob(c echo.Context) error {
	id, ok := canonicalID(c.Param("id"))
	if !ok {
		return vault.Errorf(vault.KindNotFound, vault.CodeResourceMissing, "no such key job")
	}
	job, err := s.svc.GetKeyJob(c.Request().Context(), actor(c).TenantID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newKeyJobResponse(job))
}

// retireKey serves POST /keys/retire {"key_id":…,"destroy":false}.
func (s *Server) retireKey(c echo.Context) error {
	var req retireRequest
	if err := decodeJSON(c, &req, false); err != nil {
		return err
	}
	if err := s.svc.RetireDataKey(c.Request().Context(), actor(c), req.KeyID, req.Destroy); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
