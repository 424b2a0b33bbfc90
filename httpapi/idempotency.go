package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// Idempotency headers (Stripe's names).
const (
	// HeaderIdempotencyKey names the request header holding a client's
	// idempotency key.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplayed is "true" on an answer replayed from a
	// stored one.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
)

// endClaimTimeout bounds storing an answer (or releasing its key) after the
// handler ran, even when the client has gone.
const endClaimTimeout = 5 * time.Second

// idempotent gives a POST carrying an Idempotency-Key Stripe's semantics:
// the first answer is kept 24 h for the tenant and key and replayed to
// retries of the same request (Idempotent-Replayed: true); the key with
// another request answers 400 idempotency_error; while the first still runs,
// 409 idempotency_key_in_use. Only 4xx and 2xx answers are kept.
//
// The answers of routes needing tokens:reveal hold card data and are never
// kept: such a request holds its key only while it runs, so a retry runs
// (and is audited) again. Nor are a forward's (tokens:forward): the vault
// keeps its record sealed and replays it to a retry with the same key
// itself (vault.Forwarding), so here the key is only held while the
// forward runs. Requests without the header cost one map lookup.
func (s *Server) idempotent(scope vault.Scope) echo.MiddlewareFunc {
	storable := scope != vault.ScopeTokensReveal && scope != vault.ScopeTokensForward
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			keys, ok := req.Header[HeaderIdempotencyKey]
			if !ok || req.Method != http.MethodPost {
				return next(c)
			}
			if len(keys) != 1 {
				return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeIdempotencyKeyInvalid, Param: HeaderIdempotencyKey,
					Message: "send one Idempotency-Key header"}
			}
			body, err := bufferBody(c)
			if err != nil {
				return err
			}
			claim, stored, err := s.svc.BeginIdempotent(req.Context(), actor(c), vault.IdempotentRequest{
				Key: keys[0], Method: req.Method, Path: req.URL.Path, Body: body})
			if err != nil {
				return err
			}
			if stored != nil {
				return replay(c, *stored)
			}
			return s.runClaimed(c, next, claim, storable)
		}
	}
}

// bufferBody reads the whole body (at most MaxBodyBytes) so it can be
// fingerprinted, and puts it back for the handler.
func bufferBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, tooLarge()
	}
	if err != nil {
		return nil, &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeBodyUnreadable, Message: "the request body could not be read", Err: err}
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// replay answers a stored answer.
func replay(c echo.Context, r vault.StoredResponse) error {
	c.Response().Header().Set(HeaderIdempotentReplayed, "true")
	if len(r.Body) == 0 {
		return c.NoContent(r.Status)
	}
	return c.Blob(r.Status, echo.MIMEApplicationJSON, r.Body)
}

// runClaimed runs the handler holding claim, with its answer (error answers
// included) buffered so that it is sent only after it is stored: a client
// that has seen an answer always gets it replayed. On a panic the key is
// released and the panic goes on to recoverPanics, which answers 500.
func (s *Server) runClaimed(c echo.Context, next echo.HandlerFunc, claim vault.IdempotencyClaim, storable bool) error {
	ctx := c.Request().Context()
	stop := s.svc.HoldIdempotent(ctx, claim)
	res := c.Response()
	direct := res.Writer
	buf := &bufferedWriter{header: direct.Header()}
	res.Writer = buf
	ended := false
	defer func() {
		stop()
		if !ended {
			res.Writer, res.Committed, res.Status, res.Size = direct, false, 0, 0
			s.endClaim(ctx, c, claim, nil)
		}
	}()
	if err := next(c); err != nil {
		c.Error(err)
	}
	ended = true
	stop()
	res.Writer = direct
	var keep *vault.StoredResponse
	if storable {
		keep = &vault.StoredResponse{Status: buf.status, Body: buf.body.Bytes()}
	}
	s.endClaim(ctx, c, claim, keep)
	return buf.sendTo(direct)
}

// endClaim stores keep for replay, or releases the key when keep is nil,
// on a context that outlives a departed client. Failures are logged: the
// key's lock then lapses after vault.IdempotencyLockTimeout.
func (s *Server) endClaim(ctx context.Context, c echo.Context, claim vault.IdempotencyClaim, keep *vault.StoredResponse) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endClaimTimeout)
	defer cancel()
	var err error
	if keep == nil {
		err = s.svc.ReleaseIdempotent(ctx, claim)
	} else if kept, e := s.svc.FinishIdempotent(ctx, claim, *keep); e != nil {
		err = e
	} else if !kept && keep.Status < 500 {
		s.log.Warn("idempotent answer not kept", "request_id", requestID(c), "status", keep.Status)
	}
	if err != nil {
		s.log.Error("ending an idempotency key claim", "request_id", requestID(c), "error", card.MaskPANs(err.Error()))
	}
}

// bufferedWriter holds an answer until it may be sent.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferedWriter) Header() http.Header { return w.header }

func (w *bufferedWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *bufferedWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

// sendTo writes the held answer to dst.
func (w *bufferedWriter) sendTo(dst http.ResponseWriter) error {
	if w.status == 0 {
		return nil
	}
	dst.WriteHeader(w.status)
	_, err := dst.Write(w.body.Bytes())
	return err
}
