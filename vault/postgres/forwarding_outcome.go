package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cardvault/cardvault/forwarding"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// A forward's outcome (the destination's redacted answer, sealed, or the
// failure) is written to its pending record after the exchange. The
// outcomes of concurrent forwards are group-committed (see groupCommit):
// one UPDATE and one commit for all that finished meanwhile, each request
// answering only once its own outcome has committed. A batch PostgreSQL
// refuses (a key retired meanwhile) is written outcome by outcome, as is
// one whose pending record was sealed again under another key meanwhile.
// An outcome replaces what the pending-record sweeper wrote, should it
// have marked the record before the outcome came.

// outcomeBatchesInFlight is how many outcome batches may be written at
// once: while one waits for its commit to reach the disk, the next runs
// its statement.
const outcomeBatchesInFlight = 2

// outcomeBatch is the group commit of forwards' outcomes.
type outcomeBatch = groupCommit[*outcomeWrite]

// outcomeWrite is one forward's outcome, sealed, and how writing it went.
type outcomeWrite struct {
	rec        vault.ForwardingRequest
	destStatus *int32
	requestCT  []byte // nil when the pending record's is kept
	responseCT []byte
	keyID      int64
	alone      bool  // PostgreSQL refused the batch, or the record's key changed: write alone
	err        error // the database's error, untranslated
}

// recordOutcome stores the redacted outcome of p's exchange and returns the
// record, with the exchange's error when no usable answer came. When the
// outcome cannot be stored the answer is still returned (the card has been
// sent) and the failure logged; the record stays pending.
func (s *Service) recordOutcome(tenantID uuid.UUID, p *preparedForward, ex exchangeResult) (vault.ForwardingRequest, error) {
	rec := p.rec
	rec.DestinationDuration, rec.DestinationIP = ex.duration, ex.ip
	if ex.err != nil {
		rec.Status, rec.ErrorCode = vault.ForwardFailed, ex.err.Code
	} else {
		body, header := forwarding.RedactResponse(ex.body, ex.header, p.card)
		rec.Status = vault.ForwardSucceeded
		rec.Response = &vault.ForwardedResponse{Status: ex.status, Body: string(body), Headers: headerList(header)}
		if id, ok := forwarding.RemoteTokenID(p.dest, ex.body); ok && !forwarding.HoldsCardNumber(id, p.card) {
			rec.RemoteTokenID = id
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
	defer cancel()
	if err := s.storeOutcomeBatched(ctx, tenantID, p, rec, ex.status); err != nil {
		s.log.Error("storing a forward's outcome", "forwarding_request", rec.ID, "error", card.MaskPANs(err.Error()))
		rec.Status = vault.ForwardPending
	}
	if ex.err != nil {
		return rec, ex.err
	}
	return rec, nil
}

// storeOutcomeBatched seals rec's outcome under the tenant's primary key
// and writes it with the outcomes of concurrent forwards; alone (again
// with the tenant's current keys when the one it sealed with was retired
// meanwhile) when PostgreSQL refused the batch or the key.
func (s *Service) storeOutcomeBatched(ctx context.Context, tenantID uuid.UUID, p *preparedForward, rec vault.ForwardingRequest, status int) error {
	tk, err := s.keys.get(ctx, tenantID)
	if err != nil {
		return err
	}
	w, err := s.sealOutcome(tk, p, rec, status)
	if err != nil {
		return err
	}
	_ = s.outcomes.do(w, s.writeOutcomeBatch) // each outcome's result is in w
	if w.alone || isSealingKeyViolation(w.err) {
		return s.storeOutcomeSealed(ctx, tenantID, rec, status)
	}
	return dbError(w.err, "forwarding request")
}

// sealOutcome seals rec's response details under tk's primary key, and its
// request details again only when the pending record's are under another
// key (so that the row's key_id names the one key it is under).
func (s *Service) sealOutcome(tk *tenantKeys, p *preparedForward, rec vault.ForwardingRequest, status int) (*outcomeWrite, error) {
	w := &outcomeWrite{rec: rec, keyID: int64(tk.sealer.PrimaryKeyID())}
	if status != 0 {
		st := int32(status)
		w.destStatus = &st
	}
	var err error
	if w.keyID != p.keyID || p.requestCT == nil {
		if w.requestCT, w.responseCT, err = s.sealForwardDetails(tk, rec); err != nil {
			return nil, err
		}
		return w, nil
	}
	if rec.Response == nil {
		return w, nil
	}
	resp, err := json.Marshal(rec.Response)
	if err != nil {
		return nil, vault.Internal(err)
	}
	w.responseCT, err = s.sealSide(tk, rec.TenantID, rec.ID, fieldForwardResponse, resp)
	return w, err
}

// writeOutcomesSQL writes the outcomes of a batch ($1 tenants, $2 ids, $3
// statuses, $4 destination statuses, $5 durations, $6 addresses, $7 error
// codes, $8 request details, NULL to keep the pending record's, $9
// response details, $10 key ids). A record whose request details are to be
// kept is left alone when they were sealed again under another key
// meanwhile (re-encryption). It answers the ids it wrote.
const writeOutcomesSQL = `
	UPDATE forwarding_requests f SET status = u.status, destination_status = u.dest_status, duration_ms = u.duration_ms,
		destination_ip = u.ip, error_code = u.error_code, request_ct = coalesce(u.request_ct, f.request_ct),
		response_ct = u.response_ct, key_id = u.key_id, outcome_unknown = false
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::integer[], $5::bigint[], $6::text[], $7::text[],
	            $8::bytea[], $9::bytea[], $10::bigint[])
	AS u(tenant_id, id, status, dest_status, duration_ms, ip, error_code, request_ct, response_ct, key_id)
	WHERE f.tenant_id = u.tenant_id AND f.id = u.id AND (u.request_ct IS NOT NULL OR f.key_id = u.key_id)
	RETURNING f.id`

// writeOutcomeBatch is the write of the outcomes' group commit: one
// statement for the batch. When PostgreSQL refuses a batch of several,
// nothing of it was written and each outcome is written alone. It records
// each outcome's result in it and returns nil.
func (s *Service) writeOutcomeBatch(batch []*outcomeWrite) error {
	ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
	defer cancel()
	n := len(batch)
	tenants, ids, statuses, ips, codes := make([]uuid.UUID, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	dest, durations, keyIDs := make([]*int32, n), make([]int64, n), make([]int64, n)
	reqs, resps := make([][]byte, n), make([][]byte, n)
	for i, w := range batch {
		tenants[i], ids[i], statuses[i], ips[i], codes[i] = w.rec.TenantID, w.rec.ID, string(w.rec.Status), w.rec.DestinationIP, w.rec.ErrorCode
		dest[i], durations[i], keyIDs[i] = w.destStatus, w.rec.DestinationDuration.Milliseconds(), w.keyID
		reqs[i], resps[i] = w.requestCT, w.responseCT
	}
	written, err := s.writeOutcomes(ctx, tenants, ids, statuses, dest, durations, ips, codes, reqs, resps, keyIDs)
	var pgErr *pgconn.PgError
	refused := n > 1 && errors.As(err, &pgErr)
	for _, w := range batch {
		w.alone, w.err = refused || (err == nil && !written[w.rec.ID]), err
	}
	return nil
}

// writeOutcomes runs writeOutcomesSQL with args and returns the ids
// written. It is planned at every call (planNow): run with its generic
// plan (genericplans.go) this update read 421 buffers a call against 188
// and took 1.71 ms against 0.76, more than planning it costs (0.22 ms).
// Left to choose, PostgreSQL kept the generic plan a connection made while
// forwarding_requests was small, a hash join over a sequential scan of the
// table (auto_explain), for much of a forward phase.
func (s *Service) writeOutcomes(ctx context.Context, args ...any) (map[string]bool, error) {
	rows, err := s.db.Query(ctx, writeOutcomesSQL, append([]any{planNow}, args...)...)
	if err != nil {
		return nil, err
	}
	written := map[string]bool{}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		written[id] = true
		return nil
	})
	return written, err
}

// storeOutcomeSealed runs storeOutcome, again with the tenant's current
// keys when the one it sealed with was retired meanwhile.
func (s *Service) storeOutcomeSealed(ctx context.Context, tenantID uuid.UUID, rec vault.ForwardingRequest, status int) error {
	tk, err := s.keys.get(ctx, tenantID)
	for attempt := 1; err == nil; attempt++ {
		err = s.storeOutcome(ctx, tk, rec, status)
		if !isSealingKeyViolation(err) || attempt == maxSealAttempts {
			break
		}
		tk, err = s.newerKeys(tenantID, tk)
	}
	return err
}

// storeOutcome seals rec's request and response details under tk's primary
// key (both, so that the row's key_id names the one key it is under) and
// stores them with the outcome.
func (s *Service) storeOutcome(ctx context.Context, tk *tenantKeys, rec vault.ForwardingRequest, status int) error {
	reqCT, respCT, err := s.sealForwardDetails(tk, rec)
	if err != nil {
		return err
	}
	var destStatus *int
	if status != 0 {
		destStatus = &status
	}
	_, err = s.db.Exec(ctx, `UPDATE forwarding_requests SET status = $3, destination_status = $4, duration_ms = $5,
		destination_ip = $6, error_code = $7, request_ct = $8, response_ct = $9, key_id = $10,
		outcome_unknown = false WHERE tenant_id = $1 AND id = $2`, rec.TenantID, rec.ID, string(rec.Status), destStatus,
		rec.DestinationDuration.Milliseconds(), rec.DestinationIP, rec.ErrorCode, reqCT, respCT, int64(tk.sealer.PrimaryKeyID()))
	return dbError(err, "forwarding request")
}

// sealForwardDetails seals rec's request details and, when there is one,
// its response details.
func (s *Service) sealForwardDetails(tk *tenantKeys, rec vault.ForwardingRequest) (reqCT, respCT []byte, err error) {
	req, err := json.Marshal(rec.Request)
	if err != nil {
		return nil, nil, vault.Internal(err)
	}
	if reqCT, err = s.sealSide(tk, rec.TenantID, rec.ID, fieldForwardRequest, req); err != nil || rec.Response == nil {
		return reqCT, nil, err
	}
	resp, err := json.Marshal(rec.Response)
	if err != nil {
		return nil, nil, vault.Internal(err)
	}
	respCT, err = s.sealSide(tk, rec.TenantID, rec.ID, fieldForwardResponse, resp)
	return reqCT, respCT, err
}
