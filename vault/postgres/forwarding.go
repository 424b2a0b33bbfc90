package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// A forward, in the order that lets nothing leave unaudited: resolve the
// token, match the destination, build the body, then commit the audit row,
// the CVC's consumption and a pending record in one transaction
// (forwarding_prepare.go, together with concurrent forwards); only then
// send (forwarding_send.go), and store the redacted outcome.

// The field names bound into a forwarding request's ciphertexts.
const (
	fieldForwardRequest  = "forwarding_request"
	fieldForwardResponse = "forwarding_response"
)

// forwardIdempotencyDomain starts the PRF input of a forward's request
// fingerprint (see idempotency.go for the key's).
const forwardIdempotencyDomain = "cardvault/forward-request/v1\x00"

// outcomeTimeout bounds storing a forward's outcome, which runs even when
// the merchant has gone.
const outcomeTimeout = 10 * time.Second

// forwardColumns are read by every forwarding request query, in scanForward order.
const forwardColumns = `id, tenant_id, token_id, payment_method, destination_id, url, replacements, metadata,
	status, destination_status, duration_ms, destination_ip, error_code, request_ct, response_ct, idempotency_fp, created_at, outcome_unknown`

// forwardRow is a forwarding request as stored.
type forwardRow struct {
	vault.ForwardingRequest
	destStatus            *int32
	durationMS            *int64
	requestCT, responseCT []byte
	idemFP                []byte
	idemKey               []byte // read only by the queries that need it
}

// scanForward reads a row of forwardColumns, after the leading columns
// lead when given.
func scanForward(row pgx.Row, lead ...any) (forwardRow, error) {
	var r forwardRow
	var status string
	err := row.Scan(append(lead, &r.ID, &r.TenantID, &r.TokenID, &r.PaymentMethod, &r.DestinationID, &r.URL, &r.Replacements,
		&r.Metadata, &status, &r.destStatus, &r.durationMS, &r.DestinationIP, &r.ErrorCode, &r.requestCT,
		&r.responseCT, &r.idemFP, &r.CreatedAt, &r.OutcomeUnknown)...)
	r.Status, r.CreatedAt = vault.ForwardStatus(status), r.CreatedAt.UTC()
	if r.durationMS != nil {
		r.DestinationDuration = time.Duration(*r.durationMS) * time.Millisecond
	}
	return r, err
}

// openForward opens the sealed details of r.
func (s *Service) openForward(tk *tenantKeys, r forwardRow) (vault.ForwardingRequest, error) {
	out := r.ForwardingRequest
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	pt, err := s.openSide(tk, r.TenantID, r.ID, fieldForwardRequest, r.requestCT)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(pt, &out.Request); err != nil {
		return out, vault.Internal(errors.New("stored forwarding request does not decode"))
	}
	if r.responseCT == nil {
		return out, nil
	}
	if pt, err = s.openSide(tk, r.TenantID, r.ID, fieldForwardResponse, r.responseCT); err != nil {
		return out, err
	}
	out.Response = &vault.ForwardedResponse{}
	if err := json.Unmarshal(pt, out.Response); err != nil {
		return out, vault.Internal(errors.New("stored forwarding response does not decode"))
	}
	return out, nil
}

// preparedForward is a forward whose audit row and pending record have
// committed: what to send, and what to redact the answer against.
type preparedForward struct {
	rec    vault.ForwardingRequest // as stored, pending
	dest   forwarding.Destination
	cert   *tls.Certificate
	card   card.Card
	body   []byte // card data in it: never stored, never logged
	header http.Header
	// replay is set when rec is the record of an earlier request with the
	// same Idempotency-Key: nothing is to be sent.
	replay bool
	// requestCT is the pending record's sealed request details, under
	// the key keyID.
	requestCT []byte
	keyID     int64
}

// forwardIdem is a forward's Idempotency-Key and request, as the tenant's
// PRF hashes them; zero without a key.
type forwardIdem struct {
	key, fp []byte
}

// errURLNotAllowed answers a forward whose url matches none of the
// tenant's destinations. It names no internal detail.
var errURLNotAllowed = &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeForwardInvalidParameter, Param: "url",
	Message: "url is not a forwarding destination of this account"}

// errNoPaymentMethod answers a payment method that names no token of the tenant.
var errNoPaymentMethod = &vault.Error{Kind: vault.KindNotFound, Code: vault.CodeResourceMissing, Param: "payment_method",
	Message: "no such payment method"}

// Forward sends the card named by in.PaymentMethod to in.URL: see
// vault.Forwarding for the order of its steps and its errors.
func (s *Service) Forward(ctx context.Context, a vault.Actor, in vault.ForwardInput) (vault.ForwardingRequest, error) {
	if err := checkForwardInput(in); err != nil {
		return vault.ForwardingRequest{}, err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.ForwardingRequest{}, err
	}
	idem, err := forwardIdempotency(tk, in)
	if err != nil {
		return vault.ForwardingRequest{}, err
	}
	p, err := s.prepareForward(ctx, a, tk, in, idem)
	switch {
	case errors.Is(err, errURLNotAllowed):
		return vault.ForwardingRequest{}, s.auditRefusedForward(ctx, a, in)
	case err != nil:
		return vault.ForwardingRequest{}, err
	case p.replay:
		return p.rec, replayError(p.rec)
	}
	return s.recordOutcome(a.TenantID, p, s.exchange(ctx, p))
}

// buildForward opens the card and the destination and builds the body and
// headers to send, with the pending record holding them redacted.
func (s *Service) buildForward(tk *tenantKeys, row tokenRow, drow destinationRow, in vault.ForwardInput) (*preparedForward, error) {
	dest, cert, err := s.openDestination(tk, drow)
	if err != nil {
		return nil, err
	}
	rev, err := s.open(tk, row)
	if err != nil {
		return nil, err
	}
	built, err := forwarding.Build(dest, []byte(in.Body), usableReplacements(in.Replacements, rev.Card), rev.Card)
	if err != nil {
		return nil, asBadRequest(err)
	}
	header := outboundHeader(in.Headers, built.Header, dest.Format)
	redBody, redHeader := forwarding.RedactRequest(built.Body, header, dest, rev.Card)
	rec := vault.ForwardingRequest{ID: "fwdreq_" + rand.Text(), TenantID: row.TenantID, TokenID: row.ID,
		PaymentMethod: in.PaymentMethod, DestinationID: drow.ID, URL: in.URL, Replacements: slices.Clone(in.Replacements),
		Metadata: in.Metadata, Status: vault.ForwardPending, CreatedAt: s.clock(),
		Request: vault.ForwardedRequest{Body: string(redBody), Headers: headerList(redHeader)}}
	if rec.Metadata == nil {
		rec.Metadata = map[string]string{}
	}
	return &preparedForward{rec: rec, dest: dest, cert: cert, card: rev.Card, body: built.Body, header: header}, nil
}

// usableReplacements is what Build is asked to fill: the requested
// replacements, without card_cvc once the vault holds no CVC for the card
// (used or expired), so that a later forward sends the CVC blank untouched.
func usableReplacements(requested []string, c card.Card) []string {
	if !c.CVC.IsZero() {
		return requested
	}
	return slices.DeleteFunc(slices.Clone(requested), func(r string) bool { return r == string(forwarding.CardCVC) })
}

// forwardWrite is what committing a prepared forward writes: the CVC's
// consumption (when card_cvc is asked for and the token holds one), the
// token.forward audit row and the pending record, its request details
// sealed.
type forwardWrite struct {
	consume  bool
	ev       vault.AuditEvent
	rec      vault.ForwardingRequest
	ct       []byte // the sealed request details
	keyID    int64  // the key that sealed ct
	metadata []byte
	idem     forwardIdem
}

// forwardWriteOf lays out what committing p writes.
func (s *Service) forwardWriteOf(a vault.Actor, tk *tenantKeys, row tokenRow, p *preparedForward, in vault.ForwardInput, idem forwardIdem) (*forwardWrite, error) {
	w := &forwardWrite{consume: slices.Contains(in.Replacements, string(forwarding.CardCVC)) && row.sealed.cvc != nil,
		rec: p.rec, keyID: int64(tk.sealer.PrimaryKeyID()), idem: idem}
	details, err := json.Marshal(p.rec.Request)
	if err != nil {
		return nil, vault.Internal(err)
	}
	if w.ct, err = s.sealSide(tk, row.TenantID, p.rec.ID, fieldForwardRequest, details); err != nil {
		return nil, err
	}
	w.ev = s.event(a, vault.ActionTokenForward, row.ID, map[string]any{"forwarding_request": p.rec.ID,
		"destination_id": p.rec.DestinationID, "replacements": p.rec.Replacements, "cvc_used": w.consume})
	if w.metadata, err = json.Marshal(p.rec.Metadata); err != nil {
		return nil, vault.Internal(err)
	}
	return w, nil
}

// replayOf returns row, the record of an earlier request with idem's key,
// marked for replay, or a KindIdempotency error when the key came with
// another request.
func (s *Service) replayOf(tk *tenantKeys, row forwardRow, idem forwardIdem) (*preparedForward, error) {
	if !bytes.Equal(row.idemFP, idem.fp) {
		return nil, errIdempotencyMismatch()
	}
	rec, err := s.openForward(tk, row)
	rec.Replayed = true
	return &preparedForward{rec: rec, replay: true}, err
}

// errIdempotencyMismatch answers an Idempotency-Key used with another request.
func errIdempotencyMismatch() error {
	return &vault.Error{Kind: vault.KindIdempotency, Code: vault.CodeIdempotencyError, Param: "Idempotency-Key",
		Message: "this Idempotency-Key was already used with a different request; use a new key for a new request"}
}

// replayError is the error an earlier request's record is answered with.
func replayError(rec vault.ForwardingRequest) error {
	switch rec.Status {
	case vault.ForwardSucceeded:
		return nil
	case vault.ForwardFailed:
		if rec.OutcomeUnknown {
			return &vault.Error{Kind: vault.KindUpstream, Code: rec.ErrorCode,
				Message: rec.FailureMessage() + " (forwarding request " + rec.ID + "): it was not sent again"}
		}
		return forwardFailure(rec.ErrorCode, rec.ID, nil)
	}
	return &vault.Error{Kind: vault.KindUpstream, Code: vault.CodeForwardUpstreamError,
		Message: "the outcome of the first request with this Idempotency-Key is unknown (forwarding request " + rec.ID + "): it was not sent again"}
}

// forwardIdempotency hashes in's Idempotency-Key and request with the
// tenant's PRF; zero without a key. It returns KindBadRequest for a
// malformed key.
func forwardIdempotency(tk *tenantKeys, in vault.ForwardInput) (forwardIdem, error) {
	if in.IdempotencyKey == "" {
		return forwardIdem{}, nil
	}
	if err := vault.CheckIdempotencyKey(in.IdempotencyKey); err != nil {
		return forwardIdem{}, err
	}
	key, err := tk.fp.Sum(append([]byte(idempotencyKeyDomain), in.IdempotencyKey...))
	if err != nil {
		return forwardIdem{}, vault.Internal(err)
	}
	canon, err := json.Marshal([]any{in.PaymentMethod, in.URL, in.Replacements, in.Body, in.Headers, in.Metadata})
	if err != nil {
		return forwardIdem{}, vault.Internal(err)
	}
	fp, err := tk.fp.Sum(append([]byte(forwardIdempotencyDomain), canon...))
	if err != nil {
		return forwardIdem{}, vault.Internal(err)
	}
	return forwardIdem{key: key, fp: fp}, nil
}

// auditRefusedForward records a forward refused because its url is not
// allowed, and returns that refusal.
func (s *Service) auditRefusedForward(ctx context.Context, a vault.Actor, in vault.ForwardInput) error {
	ev := s.event(a, vault.ActionTokenForward, uuid.Nil, map[string]any{"reason": "url_not_allowed"})
	ev.Outcome = vault.OutcomeDenied
	if err := s.insertAudit(ctx, s.db, ev); err != nil {
		return dbError(err, "audit event")
	}
	return errURLNotAllowed
}

// GetForwardingRequest returns the actor's tenant's record id and audits
// the read. It returns KindNotFound for an unknown, pruned or foreign id.
func (s *Service) GetForwardingRequest(ctx context.Context, a vault.Actor, id string) (vault.ForwardingRequest, error) {
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.ForwardingRequest{}, err
	}
	var row forwardRow
	err = s.inTx(ctx, "forwarding request", func(tx pgx.Tx) error {
		if row, err = scanForward(tx.QueryRow(ctx, `SELECT `+forwardColumns+` FROM forwarding_requests
			WHERE tenant_id = $1 AND id = $2`, a.TenantID, id)); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionForwardingRead, row.TokenID, map[string]any{"forwarding_request": id}))
	})
	if err != nil {
		return vault.ForwardingRequest{}, err
	}
	return s.openForward(tk, row)
}

// listForwardSQL selects a page of a tenant's records: $2 ≤ created_at < $3
// when set, after ($4, $5) or before ($6, $7) in the listing order when
// set; %s orders it.
const listForwardSQL = `SELECT ` + forwardColumns + ` FROM forwarding_requests
	WHERE tenant_id = $1
	  AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3)
	  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
	  AND ($6::timestamptz IS NULL OR (created_at, id) > ($6, $7))
	ORDER BY created_at %[1]s, id %[1]s LIMIT $8`

// ListForwardingRequests returns the actor's tenant's records newest first
// and audits the listing. It returns KindBadRequest for a bad limit, both
// cursors at once, or a cursor naming no record.
func (s *Service) ListForwardingRequests(ctx context.Context, a vault.Actor, p vault.ListForwardingParams) (vault.ForwardingPage, error) {
	if err := checkLimit(p.Limit); err != nil {
		return vault.ForwardingPage{}, err
	}
	if p.StartingAfter != "" && p.EndingBefore != "" {
		return vault.ForwardingPage{}, &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterInvalid, Param: "ending_before",
			Message: "give starting_after or ending_before, not both"}
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.ForwardingPage{}, err
	}
	var rows []forwardRow
	var page vault.ForwardingPage
	err = s.inTx(ctx, "forwarding request", func(tx pgx.Tx) error {
		if rows, page.HasMore, err = s.forwardPage(ctx, tx, a.TenantID, p); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionForwardingList, uuid.Nil, map[string]any{"count": len(rows)}))
	})
	if err != nil {
		return vault.ForwardingPage{}, err
	}
	page.Requests = make([]vault.ForwardingRequest, 0, len(rows))
	for _, r := range rows {
		rec, err := s.openForward(tk, r)
		if err != nil {
			return vault.ForwardingPage{}, err
		}
		page.Requests = append(page.Requests, rec)
	}
	return page, nil
}

// forwardPage reads one page of records, newest first, and whether more
// lie beyond it in the direction of the cursor.
func (s *Service) forwardPage(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, p vault.ListForwardingParams) ([]forwardRow, bool, error) {
	after, err := forwardCursor(ctx, tx, tenantID, p.StartingAfter, "starting_after")
	if err != nil {
		return nil, false, err
	}
	before, err := forwardCursor(ctx, tx, tenantID, p.EndingBefore, "ending_before")
	if err != nil {
		return nil, false, err
	}
	order := "DESC"
	if p.EndingBefore != "" {
		order = "ASC"
	}
	q, err := tx.Query(ctx, strings.ReplaceAll(listForwardSQL, "%[1]s", order), tenantID, p.CreatedFrom, p.CreatedUntil,
		after.at, after.id, before.at, before.id, p.Limit+1)
	if err != nil {
		return nil, false, err
	}
	rows, err := pgx.CollectRows(q, func(r pgx.CollectableRow) (forwardRow, error) { return scanForward(r) })
	if err != nil {
		return nil, false, err
	}
	more := len(rows) > p.Limit
	if more {
		rows = rows[:p.Limit]
	}
	if order == "ASC" {
		slices.Reverse(rows)
	}
	return rows, more, nil
}

// forwardPosition is a record's place in the listing order.
type forwardPosition struct {
	at *time.Time
	id string
}

// forwardCursor resolves a cursor id to its position; the zero position
// for "". It returns KindBadRequest naming param when the id names no
// record of the tenant.
func forwardCursor(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, id, param string) (forwardPosition, error) {
	if id == "" {
		return forwardPosition{}, nil
	}
	var at time.Time
	err := tx.QueryRow(ctx, `SELECT created_at FROM forwarding_requests WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		e := vault.InvalidCursor()
		if param != e.Param {
			e.Param, e.Message = param, param+" must name an object of this list, such as the first one of the next page"
		}
		return forwardPosition{}, e
	}
	return forwardPosition{at: &at, id: id}, err
}

// forwardPruneBatch bounds how many records one prune statement deletes.
const forwardPruneBatch = 1000

// PruneForwardingRequests deletes the records created more than olderThan
// ago (vault.DefaultForwardRetention when olderThan is not positive), with
// one audit row per tenant and batch, and returns how many it deleted, or a
// domain error when the database fails. The serving process runs it on a
// tick with VAULT_FORWARD_RETENTION.
func (s *Service) PruneForwardingRequests(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		olderThan = vault.DefaultForwardRetention
	}
	var total int64
	for {
		var n int64
		err := s.inAuditedTx(ctx, writerLanes, `
			WITH pruned AS (
				DELETE FROM forwarding_requests WHERE (tenant_id, id) IN (
					SELECT tenant_id, id FROM forwarding_requests WHERE created_at < $1
					ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
				RETURNING tenant_id
			)
			SELECT tenant_id, count(*) FROM pruned GROUP BY tenant_id ORDER BY tenant_id`,
			[]any{s.clock().Add(-olderThan), forwardPruneBatch}, nil, func(rows pgx.Rows) ([]vault.AuditEvent, error) {
				events, total, _, err := perTenantEvents(rows, func(t uuid.UUID, count int64) vault.AuditEvent {
					return s.event(vault.Actor{TenantID: t, ClientAddr: "forwarding-pruner"}, vault.ActionForwardingPrune, uuid.Nil,
						map[string]any{"count": count})
				})
				n = total
				return events, err
			})
		total += n
		if err != nil || n < forwardPruneBatch {
			return total, dbError(err, "forwarding request")
		}
	}
}

// checkForwardInput checks the shape of a forward before anything is
// looked up: required parameters, no card number in the plain columns
// (payment method, url, metadata), headers that can be sent. Its errors
// are KindBadRequest, as Stripe answers 400 for parameters.
func checkForwardInput(in vault.ForwardInput) error {
	for _, req := range [][2]string{{in.PaymentMethod, "payment_method"}, {in.URL, "url"}} {
		if strings.TrimSpace(req[0]) == "" {
			return missingParam(req[1])
		}
	}
	if len(in.Replacements) == 0 {
		return missingParam("replacements")
	}
	if err := checkText(in.PaymentMethod, vault.MaxBusinessKeyLen, "payment_method"); err != nil {
		return asBadRequest(err)
	}
	if err := checkText(in.URL, vault.MaxForwardURLLen, "url"); err != nil {
		return asBadRequest(err)
	}
	if err := checkAttributes("", in.Metadata); err != nil {
		return asBadRequest(err)
	}
	return checkForwardHeaders(in.Headers)
}

// hopHeaders are the headers a merchant may not set: the transport's own.
var hopHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
	"Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate", "Upgrade", "Te", "Trailer", "Expect"}

// checkForwardHeaders accepts at most MaxForwardHeaders headers with token
// names, none of hopHeaders, and values without line breaks or NULs of at
// most MaxForwardHeaderValue bytes.
func checkForwardHeaders(hs []vault.ForwardHeader) error {
	bad := func(msg string) error {
		return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeForwardInvalidParameter, Param: "request[headers]", Message: msg}
	}
	if len(hs) > vault.MaxForwardHeaders {
		return bad("at most 50 request headers")
	}
	for _, h := range hs {
		switch {
		case !headerToken(h.Name):
			return bad("each request header needs a valid name")
		case slices.Contains(hopHeaders, http.CanonicalHeaderKey(h.Name)):
			return bad("request headers must not set " + http.CanonicalHeaderKey(h.Name) + ": the vault sets it")
		case len(h.Value) > vault.MaxForwardHeaderValue || strings.ContainsAny(h.Value, "\r\n\x00"):
			return bad("request header values must be at most 8 KiB, without line breaks")
		}
	}
	return nil
}

// headerToken reports whether name is an RFC 9110 token.
func headerToken(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c > '~' || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// missingParam is Stripe's error for a required parameter left out.
func missingParam(param string) error {
	return &vault.Error{Kind: vault.KindBadRequest, Code: vault.CodeParameterMissing, Param: param, Message: "missing required param: " + param}
}

// asBadRequest makes a KindInvalid error a KindBadRequest one: the
// forwarding API answers 400 for any bad parameter, as Stripe's does.
func asBadRequest(err error) error {
	e := vault.AsError(err)
	if e.Kind != vault.KindInvalid {
		return err
	}
	c := *e
	c.Kind = vault.KindBadRequest
	return &c
}

// outboundHeader is what is sent: the merchant's headers, those Build
// added (a signature), and a Content-Type for the destination's format and
// a User-Agent unless the merchant set them.
func outboundHeader(hs []vault.ForwardHeader, built http.Header, f forwarding.Format) http.Header {
	h := http.Header{}
	for _, x := range hs {
		h.Add(x.Name, x.Value)
	}
	for k, v := range built {
		h[k] = slices.Clone(v)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", contentType(f))
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", "cardvault-forward/1")
	}
	return h
}

// contentType is the media type of a body in format f.
func contentType(f forwarding.Format) string {
	switch f {
	case forwarding.FormatForm:
		return "application/x-www-form-urlencoded"
	case forwarding.FormatXML:
		return "application/xml"
	}
	return "application/json"
}

// headerList flattens h into name/value pairs sorted by name, each value
// apart.
func headerList(h http.Header) []vault.ForwardHeader {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]vault.ForwardHeader, 0, len(names))
	for _, k := range names {
		for _, v := range h[k] {
			out = append(out, vault.ForwardHeader{Name: k, Value: v})
		}
	}
	return out
}
