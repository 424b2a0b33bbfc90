package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// This file is the webhook outbox seen from the deliverer's side: events
// are claimed under a lease, sent by importer/webhook, and every attempt is
// recorded here.

// outboxSignal wakes this process's webhook deliverers after a transaction
// that enqueued an event commits. The zero value is ready to use.
type outboxSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed by the next notify.
func (o *outboxSignal) wait() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ch == nil {
		o.ch = make(chan struct{})
	}
	return o.ch
}

// notify wakes everyone waiting.
func (o *outboxSignal) notify() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ch != nil {
		close(o.ch)
		o.ch = nil
	}
}

// WebhookEnqueued returns a channel that is closed the next time this
// service commits a webhook event. Take it before looking for due events,
// so that an event committed during the look is not missed.
func (s *Service) WebhookEnqueued() <-chan struct{} { return s.outbox.wait() }

// wakeWebhooks wakes this process's deliverers: call it after committing a
// transaction that enqueued an event.
func (s *Service) wakeWebhooks() { s.outbox.notify() }

// Now returns the service clock's reading, in UTC to the microsecond: the
// time the vault stamps on what it records and schedules.
func (s *Service) Now() time.Time { return s.clock() }

// eventDataAD binds a sealed event's data to its tenant and event id.
func eventDataAD(tenantID uuid.UUID, eventID string) []byte {
	return crypto.FieldAD(tenantID.String(), eventID, "webhook_event_data")
}

// sealedEvent is a token event's id and its data sealed for the outbox.
type sealedEvent struct {
	id    string
	ct    []byte
	keyID uint32
}

// sealTokenEvent returns a new token event carrying row's masked record
// sealed with tk's primary key. It returns the error of masking or
// sealing.
func (s *Service) sealTokenEvent(tk *tenantKeys, row tokenRow) (*sealedEvent, error) {
	tok, err := s.masked(tk, row)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(tok.Record())
	if err != nil {
		return nil, vault.Internal(err)
	}
	id, keyID := newEventID(), tk.sealer.PrimaryKeyID()
	ct, err := tk.sealer.Seal(data, eventDataAD(row.TenantID, id))
	if err != nil {
		return nil, vault.Internal(err)
	}
	return &sealedEvent{id: id, ct: []byte(ct), keyID: keyID}, nil
}

// auditTokenEvent writes a token action's audit event and, when the tenant
// has a webhook, the token event of type typ whose data is row's masked
// record, in one round trip. The record holds the cardholder name, which
// the vault keeps sealed at rest, so the event data is sealed too. It
// reports whether an event was enqueued.
func (s *Service) auditTokenEvent(ctx context.Context, tx pgx.Tx, tk *tenantKeys, ev vault.AuditEvent, typ vault.EventType, row tokenRow) (bool, error) {
	sealed, err := s.sealTokenEvent(tk, row)
	if err != nil {
		return false, err
	}
	w, err := s.prepareAudit(ctx, tx, writerLanes, []vault.AuditEvent{ev})
	if err != nil {
		return false, err
	}
	var b pgx.Batch
	w.queue(&b, s.clock())
	var enqueued bool
	b.Queue(enqueueEventSQL, sealed.id, row.TenantID, string(typ), nil, sealed.ct, int64(sealed.keyID)).
		Exec(func(tag pgconn.CommandTag) error { enqueued = tag.RowsAffected() > 0; return nil })
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return false, err
	}
	if enqueued {
		s.usage.add(row.TenantID, sealed.keyID)
	}
	return enqueued, nil
}

// envelope is the JSON body of every webhook request.
type envelope struct {
	ID        string          `json:"id"`
	Type      vault.EventType `json:"type"`
	CreatedAt string          `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// ClaimWebhookEvents claims due events for owner until lease from now, at
// most c.PerTenant of each of at most c.Tenants tenants, the tenants whose
// oldest due event is oldest first: a tenant with a long backlog cannot
// fill a claim and hold back another's event. Only tenants with a webhook,
// events not delivered nor given up, due, and held by no live lease of
// another owner (owner's own, of tenants it is not sending to, are claims
// whose answer was lost in a database failover or whose release failed: it
// takes them again); never c.SkipTenants' nor those bound for c.SkipURLs. Rows are taken with
// FOR UPDATE SKIP LOCKED, so concurrent deliverers (in this process or
// other replicas) never claim the same attempt. It returns a domain error
// when the database fails; an event whose secret or data does not open
// comes back with Err set.
func (s *Service) ClaimWebhookEvents(ctx context.Context, owner string, c vault.EventClaim, lease time.Duration) ([]vault.ClaimedEvent, error) {
	now := s.clock()
	skipTenants, skipURLs := c.SkipTenants, c.SkipURLs
	if skipTenants == nil {
		skipTenants = []uuid.UUID{}
	}
	if skipURLs == nil {
		skipURLs = []string{}
	}
	rows, err := s.db.Query(ctx, `
		WITH ready AS (
			SELECT e.tenant_id, min(e.seq) AS first FROM webhook_events e
			JOIN webhooks w ON w.tenant_id = e.tenant_id JOIN tenants t ON t.id = e.tenant_id
			WHERE e.delivered_at IS NULL AND e.given_up_at IS NULL AND e.next_attempt_at <= $2
			  AND (e.lease_expires_at IS NULL OR e.lease_expires_at <= $2 OR e.lease_owner = $1)
			  AND t.destroyed_at IS NULL AND e.tenant_id <> ALL($6) AND w.url <> ALL($7)
			GROUP BY e.tenant_id ORDER BY first LIMIT $4),
		due AS (
			SELECT d.id FROM ready CROSS JOIN LATERAL (
				SELECT e.id FROM webhook_events e
				WHERE e.tenant_id = ready.tenant_id AND e.delivered_at IS NULL AND e.given_up_at IS NULL
				  AND e.next_attempt_at <= $2 AND (e.lease_expires_at IS NULL OR e.lease_expires_at <= $2 OR e.lease_owner = $1)
				ORDER BY e.seq LIMIT $5
				FOR UPDATE OF e SKIP LOCKED) d)
		UPDATE webhook_events e SET lease_owner = $1, lease_expires_at = $3
		FROM due, webhooks w
		WHERE e.id = due.id AND w.tenant_id = e.tenant_id
		RETURNING e.id, e.seq, e.tenant_id, e.type, e.created_at, e.payload, e.payload_ct,
		          e.attempts + 1, coalesce(e.first_attempt_at, $2), w.url, w.secret_ct,
		          CASE WHEN w.previous_expires_at > $2 THEN w.previous_secret_ct END`,
		owner, now, now.Add(lease), max(c.Tenants, 1), max(c.PerTenant, 1), skipTenants, skipURLs)
	if err != nil {
		return nil, dbError(err, "webhook event")
	}
	var out []vault.ClaimedEvent
	for rows.Next() {
		ev, err := s.scanClaimed(ctx, rows)
		if err != nil {
			rows.Close()
			return nil, dbError(err, "webhook event")
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(err, "webhook event")
	}
	slices.SortFunc(out, func(a, b vault.ClaimedEvent) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// scanClaimed reads one claimed row and opens its secret and data. A
// database error is returned; a crypto failure is put in the event's Err.
func (s *Service) scanClaimed(ctx context.Context, row pgx.Row) (vault.ClaimedEvent, error) {
	var ev vault.ClaimedEvent
	var typ string
	var created time.Time
	var payload, payloadCT, secretCT, previousCT []byte
	if err := row.Scan(&ev.ID, &ev.Seq, &ev.TenantID, &typ, &created, &payload, &payloadCT,
		&ev.Attempt, &ev.FirstAttemptAt, &ev.URL, &secretCT, &previousCT); err != nil {
		return ev, err
	}
	ev.Type, ev.FirstAttemptAt = vault.EventType(typ), ev.FirstAttemptAt.UTC()
	ev.Body, ev.Secret, ev.Err = s.openEvent(ctx, ev, created, payload, payloadCT, secretCT)
	if ev.Err == nil && previousCT != nil {
		ev.PreviousSecret, ev.Err = s.openPreviousSecret(ctx, ev, previousCT)
	}
	return ev, nil
}

// openEvent opens a claimed event's signing secret and data and returns the
// envelope to send.
func (s *Service) openEvent(ctx context.Context, ev vault.ClaimedEvent, created time.Time, payload, payloadCT, secretCT []byte) ([]byte, card.Secret, error) {
	tk, err := s.keys.get(ctx, ev.TenantID)
	if err != nil {
		return nil, card.Secret{}, err
	}
	secret, err := openWebhookSecret(tk, ev.TenantID, ev.URL, secretCT)
	if err != nil {
		return nil, card.Secret{}, err
	}
	if payloadCT != nil {
		if payload, err = tk.sealer.Open(crypto.Ciphertext(payloadCT), eventDataAD(ev.TenantID, ev.ID)); err != nil {
			return nil, card.Secret{}, vault.Internal(errors.New("webhook event data does not open"))
		}
	}
	body, err := json.Marshal(envelope{ID: ev.ID, Type: ev.Type, CreatedAt: vault.Timestamp(created), Data: payload})
	if err != nil {
		return nil, card.Secret{}, vault.Internal(err)
	}
	return body, secret, nil
}

// openPreviousSecret opens the signing secret a rotation replaced.
func (s *Service) openPreviousSecret(ctx context.Context, ev vault.ClaimedEvent, ct []byte) (card.Secret, error) {
	tk, err := s.keys.get(ctx, ev.TenantID)
	if err != nil {
		return card.Secret{}, err
	}
	return openWebhookSecret(tk, ev.TenantID, ev.URL, ct)
}

// maxDeliveryError is the longest error text kept with an attempt.
const maxDeliveryError = 500

// RecordWebhookAttempt records an attempt at ev by owner and moves the
// event on: delivered, rescheduled at r.RetryAt, or given up (audited). The
// attempt is recorded even when owner's lease was lost meanwhile; the event
// is then left to the new owner. It returns a domain error when the
// database fails.
func (s *Service) RecordWebhookAttempt(ctx context.Context, owner string, ev vault.ClaimedEvent, r vault.AttemptResult) error {
	outcome := vault.OutcomeRetrying
	switch {
	case r.Delivered:
		outcome = vault.OutcomeDelivered
	case r.RetryAt.IsZero():
		outcome = vault.OutcomeGaveUp
	}
	var status *int
	if r.Status != 0 {
		status = &r.Status
	}
	errText := card.MaskPANs(r.Error)
	if len(errText) > maxDeliveryError {
		errText = errText[:maxDeliveryError]
	}
	return s.inTx(ctx, "webhook event", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO webhook_deliveries (event_id, tenant_id, attempt, attempted_at, url, status, error, duration_ms, outcome)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			ev.ID, ev.TenantID, ev.Attempt, r.At, ev.URL, status, errText, r.Duration.Milliseconds(), string(outcome)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			UPDATE webhook_events SET attempts = $3, first_attempt_at = coalesce(first_attempt_at, $4),
			       lease_owner = NULL, lease_expires_at = NULL,
			       delivered_at = CASE WHEN $5 = 'delivered' THEN $4 END,
			       given_up_at = CASE WHEN $5 = 'gave_up' THEN $4 END,
			       next_attempt_at = CASE WHEN $5 = 'retrying' THEN $6 ELSE next_attempt_at END
			WHERE id = $1 AND lease_owner = $2`,
			ev.ID, owner, ev.Attempt, r.At, string(outcome), r.RetryAt)
		if err != nil || tag.RowsAffected() == 0 || outcome != vault.OutcomeGaveUp {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(vault.Actor{TenantID: ev.TenantID, ClientAddr: "webhook-deliverer"}, vault.ActionWebhookGiveUp,
			uuid.Nil, map[string]any{"event_id": ev.ID, "type": string(ev.Type), "attempts": ev.Attempt}))
	})
}

// ReleaseWebhookEvents gives up owner's leases on events it claimed but
// did not attempt (the deliverer is stopping), so another deliverer can
// send them at once. It returns a domain error when the database fails.
func (s *Service) ReleaseWebhookEvents(ctx context.Context, owner string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.db.Exec(ctx, `UPDATE webhook_events SET lease_owner = NULL, lease_expires_at = NULL
		WHERE id = ANY($1) AND lease_owner = $2`, ids, owner)
	return dbError(err, "webhook event")
}

// webhookRowsUnderKey counts what a tenant's webhook rows still need data
// key keyID for: the sealed signing secret and the sealed data of events
// not yet delivered nor given up. Retiring a key must wait for zero (after
// resealWebhookRows has run, only events enqueued meanwhile can be left).
func webhookRowsUnderKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM webhooks WHERE tenant_id = $1 AND key_id = $2) +
		(SELECT count(*) FROM webhooks WHERE tenant_id = $1 AND previous_key_id = $2) +
		(SELECT count(*) FROM webhook_events WHERE tenant_id = $1 AND key_id = $2
		   AND delivered_at IS NULL AND given_up_at IS NULL)`, tenantID, int64(keyID)).Scan(&n)
	return n, err
}

// resealWebhookRows re-seals under tk's primary data key what the tenant's
// webhook rows still hold under another key — the signing secret, and the
// data of events not yet delivered nor given up — so that old keys can be
// retired; the re-encryption job is the place to call it. It returns how
// many rows it re-sealed, or the error of a row that does not open.
func (s *Service) resealWebhookRows(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	primary := tk.sealer.PrimaryKeyID()
	n, err := s.resealWebhookSecret(ctx, tx, tenantID, tk)
	if err != nil {
		return 0, err
	}
	m, err := s.resealPreviousSecret(ctx, tx, tenantID, tk)
	if err != nil {
		return 0, err
	}
	n += m
	rows, err := tx.Query(ctx, `SELECT id, payload_ct FROM webhook_events
		WHERE tenant_id = $1 AND key_id <> $2 AND delivered_at IS NULL AND given_up_at IS NULL FOR UPDATE`,
		tenantID, int64(primary))
	if err != nil {
		return 0, err
	}
	var ids []string
	var cts [][]byte
	for rows.Next() {
		var id string
		var ct []byte
		if err := rows.Scan(&id, &ct); err != nil {
			rows.Close()
			return 0, err
		}
		pt, err := tk.sealer.Open(crypto.Ciphertext(ct), eventDataAD(tenantID, id))
		if err != nil {
			rows.Close()
			return 0, vault.Internal(errors.New("webhook event data does not open"))
		}
		if ct, err = tk.sealer.Seal(pt, eventDataAD(tenantID, id)); err != nil {
			rows.Close()
			return 0, vault.Internal(err)
		}
		s.usage.add(tenantID, primary)
		ids, cts = append(ids, id), append(cts, ct)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE webhook_events e SET payload_ct = v.ct, key_id = $2
		FROM unnest($1::text[], $3::bytea[]) AS v(id, ct) WHERE e.id = v.id`, ids, int64(primary), cts)
	return n + len(ids), err
}

// resealWebhookSecret re-seals the tenant's signing secret under tk's
// primary key when another key sealed it, and reports whether it did.
func (s *Service) resealWebhookSecret(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	var u string
	var ct []byte
	err := tx.QueryRow(ctx, `SELECT url, secret_ct FROM webhooks WHERE tenant_id = $1 AND key_id <> $2 FOR UPDATE`,
		tenantID, int64(tk.sealer.PrimaryKeyID())).Scan(&u, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	secret, err := openWebhookSecret(tk, tenantID, u, ct)
	if err != nil {
		return 0, err
	}
	resealed, keyID, err := s.sealWebhookSecret(tk, tenantID, u, secret.Reveal())
	if err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE webhooks SET secret_ct = $2, key_id = $3 WHERE tenant_id = $1`,
		tenantID, []byte(resealed), int64(keyID))
	return 1, err
}

// resealPreviousSecret re-seals under tk's primary key the previous signing
// secret of a rotation still in its overlap, or drops it once the overlap
// has closed; it reports whether it changed the row.
func (s *Service) resealPreviousSecret(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	tag, err := tx.Exec(ctx, `UPDATE webhooks SET previous_secret_ct = NULL, previous_key_id = NULL, previous_expires_at = NULL
		WHERE tenant_id = $1 AND previous_expires_at <= $2`, tenantID, s.clock())
	if err != nil {
		return 0, err
	}
	dropped := int(tag.RowsAffected())
	var u string
	var ct []byte
	err = tx.QueryRow(ctx, `SELECT url, previous_secret_ct FROM webhooks
		WHERE tenant_id = $1 AND previous_key_id <> $2 FOR UPDATE`, tenantID, int64(tk.sealer.PrimaryKeyID())).Scan(&u, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return dropped, nil
	}
	if err != nil {
		return 0, err
	}
	secret, err := openWebhookSecret(tk, tenantID, u, ct)
	if err != nil {
		return 0, err
	}
	resealed, keyID, err := s.sealWebhookSecret(tk, tenantID, u, secret.Reveal())
	if err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE webhooks SET previous_secret_ct = $2, previous_key_id = $3 WHERE tenant_id = $1`,
		tenantID, []byte(resealed), int64(keyID))
	return dropped + 1, err
}
