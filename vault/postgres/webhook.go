package postgres

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/egress"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// webhookSecretPrefix starts every signing secret, as Stripe's whsec_ does.
const webhookSecretPrefix = "whsec_"

// enqueueEventSQL adds an event to the tenant's outbox when, and only when,
// the tenant has a webhook: one round trip and no row otherwise. The
// created_at default is the transaction's time.
const enqueueEventSQL = `
	INSERT INTO webhook_events (id, tenant_id, type, payload, payload_ct, key_id)
	SELECT $1::text, tenant_id, $3::text, $4::jsonb, $5::bytea, $6::bigint FROM webhooks WHERE tenant_id = $2`

// enqueueEvent adds an event to the tenant's outbox inside q's transaction; it does nothing when
// the tenant has no webhook. data is marshalled as the event's "data".
//
// data is stored as plain jsonb, so it must hold nothing sensitive (no card
// data, no cardholder name: token events go through auditTokenEvent, which
// seals them). After the transaction commits, call s.WakeWebhooks so that
// this process's deliverer sends the event at once rather than at its next
// poll.
func enqueueEvent(ctx context.Context, q querier, tenantID uuid.UUID, typ vault.EventType, data any) error {
	payload, err := json.Marshal(data)
	if err != nil {
		return vault.Internal(err)
	}
	_, err = q.Exec(ctx, enqueueEventSQL, newEventID(), tenantID, string(typ), payload, nil, nil)
	return err
}

// newEventID returns "evt_" and 26 random base32 characters (130 bits).
func newEventID() string {
	return "evt_" + rand.Text()
}

// SetWebhook sets the actor's tenant's webhook URL and returns it with a new
// signing secret ("whsec_…"), which is shown only here: every call, and so
// every URL change, rotates the secret. The URL must be https to a DNS name
// (loopback hosts, and http to them, only with Config.AllowLoopback)
// without user information or a card number; it is stored with its scheme
// lower-cased.
// It returns a KindInvalid error for a bad URL and a domain error when the
// keys or the database fail. The change is audited.
func (s *Service) SetWebhook(ctx context.Context, a vault.Actor, rawURL string) (vault.Webhook, string, error) {
	rawURL, err := checkWebhookURL(rawURL, s.allowLoopback)
	if err != nil {
		return vault.Webhook{}, "", err
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.Webhook{}, "", err
	}
	secret, err := newWebhookSecret()
	if err != nil {
		return vault.Webhook{}, "", vault.Internal(err)
	}
	ct, keyID, err := s.sealWebhookSecret(tk, a.TenantID, rawURL, secret)
	if err != nil {
		return vault.Webhook{}, "", err
	}
	wh := vault.Webhook{TenantID: a.TenantID, URL: rawURL, CreatedAt: s.clock()}
	err = s.inTx(ctx, "webhook", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO webhooks (tenant_id, url, secret_ct, key_id, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id) DO UPDATE
			SET url = excluded.url, secret_ct = excluded.secret_ct, key_id = excluded.key_id, created_at = excluded.created_at,
			    previous_secret_ct = NULL, previous_key_id = NULL, previous_expires_at = NULL`,
			wh.TenantID, wh.URL, []byte(ct), int64(keyID), wh.CreatedAt); err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionWebhookSet, uuid.Nil, map[string]any{"url": wh.URL}))
	})
	if err != nil {
		return vault.Webhook{}, "", s.sealRefused(a.TenantID, err)
	}
	return wh, secret, nil
}

// RotateWebhookSecret gives the actor's tenant's webhook a new signing
// secret, shown only in this answer, while the previous one keeps signing
// deliveries next to it for overlap (0 ends it at once; at most
// vault.MaxSecretOverlap). It returns KindInvalid for a bad overlap,
// KindNotFound when there is no webhook, and a domain error when the keys
// or the database fail. The rotation is audited.
func (s *Service) RotateWebhookSecret(ctx context.Context, a vault.Actor, overlap time.Duration) (vault.Webhook, string, error) {
	if overlap < 0 || overlap > vault.MaxSecretOverlap {
		return vault.Webhook{}, "", vault.InvalidParam(vault.CodeParameterInvalid, "overlap_seconds",
			"overlap_seconds must be from 0 to 604800 (7 days)")
	}
	tk, err := s.keys.get(ctx, a.TenantID)
	if err != nil {
		return vault.Webhook{}, "", err
	}
	secret, err := newWebhookSecret()
	if err != nil {
		return vault.Webhook{}, "", vault.Internal(err)
	}
	var wh vault.Webhook
	err = s.inTx(ctx, "webhook", func(tx pgx.Tx) error {
		var err error
		wh, err = s.rotateSecretTx(ctx, tx, a, tk, secret, overlap)
		return err
	})
	if err != nil {
		return vault.Webhook{}, "", s.sealRefused(a.TenantID, err)
	}
	return wh, secret, nil
}

// rotateSecretTx stores secret as the tenant's signing secret within tx,
// keeping the current one as the previous for overlap, and audits it.
func (s *Service) rotateSecretTx(ctx context.Context, tx pgx.Tx, a vault.Actor, tk *tenantKeys, secret string, overlap time.Duration) (vault.Webhook, error) {
	wh := vault.Webhook{TenantID: a.TenantID, CreatedAt: s.clock()}
	if err := tx.QueryRow(ctx, `SELECT url FROM webhooks WHERE tenant_id = $1 FOR UPDATE`, a.TenantID).Scan(&wh.URL); err != nil {
		return wh, err
	}
	ct, keyID, err := s.sealWebhookSecret(tk, a.TenantID, wh.URL, secret)
	if err != nil {
		return wh, err
	}
	var expires *time.Time
	if overlap > 0 {
		wh.PreviousSecretExpiresAt = wh.CreatedAt.Add(overlap)
		expires = &wh.PreviousSecretExpiresAt
	}
	if _, err := tx.Exec(ctx, `UPDATE webhooks SET
		previous_secret_ct = CASE WHEN $5::timestamptz IS NULL THEN NULL ELSE secret_ct END,
		previous_key_id = CASE WHEN $5::timestamptz IS NULL THEN NULL ELSE key_id END,
		previous_expires_at = $5, secret_ct = $2, key_id = $3, created_at = $4
		WHERE tenant_id = $1`, a.TenantID, []byte(ct), int64(keyID), wh.CreatedAt, expires); err != nil {
		return wh, err
	}
	return wh, s.insertAudit(ctx, tx, s.event(a, vault.ActionWebhookSecretRotate, uuid.Nil,
		map[string]any{"url": wh.URL, "overlap_seconds": int64(overlap / time.Second)}))
}

// GetWebhook returns the actor's tenant's webhook (never its secret) and
// audits the read. It returns a KindNotFound error when there is none.
func (s *Service) GetWebhook(ctx context.Context, a vault.Actor) (vault.Webhook, error) {
	var wh vault.Webhook
	err := s.inTx(ctx, "webhook", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT tenant_id, url, created_at FROM webhooks WHERE tenant_id = $1`,
			a.TenantID).Scan(&wh.TenantID, &wh.URL, &wh.CreatedAt); err != nil {
			return err
		}
		wh.CreatedAt = wh.CreatedAt.UTC()
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionWebhookRead, uuid.Nil, nil))
	})
	return wh, err
}

// DeleteWebhook deletes the actor's tenant's webhook with its secret, gives
// up the events still waiting to go out, and audits it; the delivery record
// stays. It returns a KindNotFound error when there is none.
func (s *Service) DeleteWebhook(ctx context.Context, a vault.Actor) error {
	return s.inTx(ctx, "webhook", func(tx pgx.Tx) error {
		var u string
		if err := tx.QueryRow(ctx, `DELETE FROM webhooks WHERE tenant_id = $1 RETURNING url`, a.TenantID).Scan(&u); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE webhook_events SET given_up_at = $2, lease_owner = NULL, lease_expires_at = NULL
			WHERE tenant_id = $1 AND delivered_at IS NULL AND given_up_at IS NULL`, a.TenantID, s.clock())
		if err != nil {
			return err
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionWebhookDelete, uuid.Nil,
			map[string]any{"url": u, "pending_events_dropped": tag.RowsAffected()}))
	})
}

// ListWebhookDeliveries returns the actor's tenant's delivery attempts
// newest first, after the attempt id cursor when it is non-zero, and audits
// the listing. It returns a KindBadRequest error for a limit outside 1–100
// and a domain error when the database fails.
func (s *Service) ListWebhookDeliveries(ctx context.Context, a vault.Actor, limit int, cursor int64) (vault.WebhookDeliveryPage, error) {
	if err := checkLimit(limit); err != nil {
		return vault.WebhookDeliveryPage{}, err
	}
	var page vault.WebhookDeliveryPage
	err := s.inTx(ctx, "webhook delivery", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT d.id, d.event_id, e.type, d.attempt, d.attempted_at, d.url, coalesce(d.status, 0),
			       d.error, d.duration_ms, d.outcome
			FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
			WHERE d.tenant_id = $1 AND ($2::bigint = 0 OR d.id < $2)
			ORDER BY d.id DESC LIMIT $3`, a.TenantID, cursor, limit+1)
		if err != nil {
			return err
		}
		page.Deliveries, err = pgx.CollectRows(rows, scanDelivery)
		if err != nil {
			return err
		}
		if len(page.Deliveries) > limit {
			page.Deliveries, page.HasMore = page.Deliveries[:limit], true
		}
		return s.insertAudit(ctx, tx, s.event(a, vault.ActionWebhookDeliveriesList, uuid.Nil,
			map[string]any{"count": len(page.Deliveries)}))
	})
	return page, err
}

func scanDelivery(row pgx.CollectableRow) (vault.WebhookDelivery, error) {
	var d vault.WebhookDelivery
	var typ, outcome string
	var ms int64
	err := row.Scan(&d.ID, &d.EventID, &typ, &d.Attempt, &d.AttemptedAt, &d.URL, &d.Status, &d.Error, &ms, &outcome)
	d.EventType, d.Outcome = vault.EventType(typ), vault.DeliveryOutcome(outcome)
	d.AttemptedAt, d.Duration = d.AttemptedAt.UTC(), time.Duration(ms)*time.Millisecond
	return d, err
}

// checkWebhookURL returns raw in its normal form (the scheme lower-cased),
// or a KindInvalid error for param "url" unless it is a destination the
// egress client accepts (egress.CheckURL: https to a DNS name; loopback
// and plain http to it only when loopback is allowed) with no whitespace
// and nothing that looks like a card number.
func checkWebhookURL(raw string, allowLoopback bool) (string, error) {
	if raw == "" {
		return "", vault.InvalidParam(vault.CodeInvalidURL, "url", "url is required")
	}
	if err := checkText(raw, vault.MaxWebhookURLLen, "url"); err != nil {
		return "", err
	}
	if strings.ContainsAny(raw, " \t") {
		return "", vault.InvalidParam(vault.CodeInvalidURL, "url", "url must not contain whitespace")
	}
	if err := egress.CheckURL(raw, allowLoopback); err != nil {
		var ue *egress.URLError
		msg := "url is not an acceptable https URL"
		if errors.As(err, &ue) {
			msg = strings.Replace(ue.Reason, "URL", "url", 1)
		}
		return "", vault.InvalidParam(vault.CodeInvalidURL, "url", msg)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", vault.InvalidParam(vault.CodeInvalidURL, "url", "url is not valid")
	}
	return u.String(), nil
}

// newWebhookSecret returns "whsec_" and 256 random bits in base64url.
func newWebhookSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return webhookSecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// webhookSecretAD binds a sealed signing secret to its tenant, to the
// webhook and to the URL it signs for: a secret copied to another tenant,
// or a URL changed in the database, no longer opens.
func webhookSecretAD(tenantID uuid.UUID, rawURL string) []byte {
	return crypto.FieldAD(tenantID.String(), "webhook", "signing_secret "+rawURL)
}

// sealWebhookSecret seals secret with the tenant's primary data key and
// returns the ciphertext with that key's id.
func (s *Service) sealWebhookSecret(tk *tenantKeys, tenantID uuid.UUID, rawURL, secret string) (crypto.Ciphertext, uint32, error) {
	keyID := tk.sealer.PrimaryKeyID()
	ct, err := tk.sealer.Seal([]byte(secret), webhookSecretAD(tenantID, rawURL))
	if err != nil {
		return nil, 0, vault.Internal(err)
	}
	s.usage.add(tenantID, keyID)
	return ct, keyID, nil
}

// openWebhookSecret opens a sealed signing secret.
func openWebhookSecret(tk *tenantKeys, tenantID uuid.UUID, rawURL string, ct []byte) (card.Secret, error) {
	pt, err := tk.sealer.Open(crypto.Ciphertext(ct), webhookSecretAD(tenantID, rawURL))
	if err != nil {
		return card.Secret{}, vault.Internal(errors.New("webhook signing secret does not open"))
	}
	return card.NewSecret(string(pt)), nil
}
