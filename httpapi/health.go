package httpapi

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

type statusResponse struct {
	Status string `json:"status"`
}

// readyTTL is how long a readiness answer is reused: /readyz needs no key
// and is not under the in-flight cap, so probes (or anyone) calling it in a
// loop cost the database at most one check a second.
const readyTTL = time.Second

// readiness caches the last readiness check.
type readiness struct {
	mu  sync.Mutex
	at  time.Time // when the cached answer was taken; zero: none yet
	err error
}

// check returns the cached answer while it is younger than readyTTL at
// now, else runs ready (one caller at a time) and caches its answer.
func (r *readiness) check(ctx context.Context, now time.Time, ready func(context.Context) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && now.Sub(r.at) < readyTTL && !now.Before(r.at) {
		return r.err
	}
	r.err = ready(ctx)
	r.at = now
	return r.err
}

// healthz serves GET /healthz: the process is up.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, statusResponse{"ok"})
}

// readyz serves GET /readyz: the database answers and the root KEK opens
// the tenant keysets; 503 otherwise. The answer is reused for readyTTL.
func (s *Server) readyz(c echo.Context) error {
	if err := s.ready.check(c.Request().Context(), s.safety.clock(), s.svc.Ready); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, statusResponse{"ready"})
}
