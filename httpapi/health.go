package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type statusResponse struct {
	Status string `json:"status"`
}

// healthz serves GET /healthz: the process is up.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, statusResponse{"ok"})
}

// readyz serves GET /readyz: the database answers and the root KEK opens
// the tenant keysets; 503 otherwise.
func (s *Server) readyz(c echo.Context) error {
	if err := s.svc.Ready(c.Request().Context()); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, statusResponse{"ready"})
}
