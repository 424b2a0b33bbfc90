-- Webhooks: one endpoint per tenant, a durable outbox of events, and a record
-- of every delivery attempt.
--
-- The signing secret is sealed with the tenant data keyset (associated data
-- binds the tenant, "webhook" and the URL) and never stored in plaintext.
-- Token events carry the masked token record, whose cardholder name the vault
-- keeps sealed at rest, so their data is sealed the same way (bound to the
-- tenant and event id) in payload_ct; other event data (import job records)
-- holds nothing sensitive and is plain jsonb in payload. key_id names the
-- data key that sealed a row, so a key is not retired while a row needs it.

CREATE TABLE webhooks (
    tenant_id   uuid        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url         text        NOT NULL CHECK (url ~ '^https?://'),
    secret_ct   bytea       NOT NULL,
    key_id      bigint      NOT NULL,
    created_at  timestamptz NOT NULL  -- when this URL and secret were set
);

-- The outbox. An event is written in the transaction of the change it
-- reports, only for tenants with a webhook. A deliverer claims due events
-- with FOR UPDATE SKIP LOCKED and a lease, so several replicas never send
-- the same attempt twice. next_attempt_at is -infinity until a first failed
-- attempt (due at once, whatever the clock); seq gives the created order.
CREATE TABLE webhook_events (
    id               text        PRIMARY KEY CHECK (id ~ '^evt_[A-Z2-7]{26}$'),
    seq              bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type             text        NOT NULL,
    payload          jsonb,
    payload_ct       bytea,
    key_id           bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT '-infinity',
    first_attempt_at timestamptz,
    delivered_at     timestamptz,
    given_up_at      timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz,
    CHECK ((payload IS NULL) <> (payload_ct IS NULL)),
    CHECK ((payload_ct IS NULL) = (key_id IS NULL))
);
-- Due events: only pending rows are indexed, so the index stays small.
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at, seq)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE INDEX webhook_events_tenant ON webhook_events (tenant_id, seq DESC);

-- One row per delivery attempt: what was sent where, what came back.
CREATE TABLE webhook_deliveries (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text        NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL CHECK (attempt >= 1),
    attempted_at timestamptz NOT NULL,
    url          text        NOT NULL,
    status       integer,                          -- the receiver's HTTP status; NULL when none came
    error        text        NOT NULL DEFAULT '',  -- why no answer came; never card data
    duration_ms  bigint      NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'gave_up'))
);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
