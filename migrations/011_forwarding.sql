-- Forwarding: a tenant's allow-list of destinations, and the record of every
-- forward (Stripe's ForwardingRequest), so that a merchant can send a stored
-- card to a processor without ever holding it.
--
-- No column holds card data. A destination's configuration (URL pattern,
-- body format, where each card field goes, which headers are secret) is
-- plain jsonb without secrets; its secrets (the request-signature key, the
-- mTLS certificate and private key) are sealed with the tenant data keyset.
-- A forward's record keeps ids, the URL, status codes and timings in plain
-- columns, and the request and response as sent and received only redacted
-- (number masked to first six and last four, CVC "***", secret headers
-- replaced) and sealed with the tenant data keyset as well: they may still
-- hold a cardholder name or the destination's own data. Records are pruned
-- after the retention (VAULT_FORWARD_RETENTION, 30 days by default).
--
-- Both tables join the sealing-key rules of migration 008: key_id names the
-- data key that sealed a row's ciphertexts (all of them: a writer seals
-- every field of a row with one key), and a foreign key to
-- tenant_sealing_keys makes a retire wait for writers under way and refuse
-- while a row still needs the key. The re-encryption job re-seals them.

CREATE TABLE forwarding_destinations (
    tenant_id      uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id             text        NOT NULL CHECK (id ~ '^fwddst_[A-Z2-7]{26}$'),
    url            text        NOT NULL CHECK (url ~ '^https?://'),  -- the pattern: exact path or prefix ending in /*
    preset         text        NOT NULL DEFAULT '',                  -- the preset it was made from, '' for a custom one
    config         jsonb       NOT NULL,                             -- format, fields, secret headers, timeout, signature rule; no secret
    signature_ct   bytea,                                            -- the request-signature HMAC key, sealed
    client_cert_ct bytea,                                            -- PEM certificate and private key for mTLS, sealed
    key_id         bigint,                                           -- the data key that sealed both; NULL when there is none
    created_at     timestamptz NOT NULL,
    deleted_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((key_id IS NULL) = (signature_ct IS NULL AND client_cert_ct IS NULL)),
    CHECK (deleted_at IS NULL OR key_id IS NULL),                    -- a removed destination keeps no secret
    CONSTRAINT forwarding_destinations_sealing_key
        FOREIGN KEY (tenant_id, key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id)
);
CREATE INDEX forwarding_destinations_live ON forwarding_destinations (tenant_id, created_at) WHERE deleted_at IS NULL;

CREATE TABLE forwarding_requests (
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                 text        NOT NULL CHECK (id ~ '^fwdreq_[A-Z2-7]{26}$'),
    token_id           uuid        NOT NULL,          -- no foreign key: the record outlives a deleted token
    payment_method     text        NOT NULL,          -- as the merchant named the card: token id or business key
    destination_id     text        NOT NULL,
    url                text        NOT NULL,
    replacements       text[]      NOT NULL,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    status             text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    destination_status integer,                       -- the destination's HTTP status; NULL when none came
    duration_ms        bigint,
    destination_ip     text        NOT NULL DEFAULT '',
    error_code         text        NOT NULL DEFAULT '',  -- Stripe's forwarding_api_* code of a failure
    request_ct         bytea       NOT NULL,          -- redacted request details (body, headers), sealed
    response_ct        bytea,                         -- redacted response details (status, body, headers), sealed
    key_id             bigint      NOT NULL,
    idempotency_key    bytea       CHECK (length(idempotency_key) = 32),  -- PRF of the Idempotency-Key, for 24 h
    idempotency_fp     bytea       CHECK (length(idempotency_fp) = 32),   -- PRF of the request it came with
    created_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((status = 'succeeded') = (destination_status IS NOT NULL AND response_ct IS NOT NULL)),
    CHECK ((idempotency_key IS NULL) = (idempotency_fp IS NULL)),
    CONSTRAINT forwarding_requests_sealing_key
        FOREIGN KEY (tenant_id, key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id)
);
CREATE INDEX forwarding_requests_list ON forwarding_requests (tenant_id, created_at DESC, id DESC);
CREATE INDEX forwarding_requests_expiry ON forwarding_requests (created_at);
CREATE INDEX forwarding_requests_key ON forwarding_requests (tenant_id, key_id);
-- One outbound request per Idempotency-Key: a retry finds the record of the
-- first attempt, whatever became of it.
CREATE UNIQUE INDEX forwarding_requests_idempotency ON forwarding_requests (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
