-- Idempotency keys (Stripe semantics): the first answer to a POST carrying
-- an Idempotency-Key is kept for 24 hours per tenant and key, so a retry
-- replays it instead of running again.
--
-- No column holds card data. The request is remembered only by a keyed
-- fingerprint (the tenant's PRF keyset over method, path and body), never by
-- its body, which carries the PAN and CVC. Only masked answers are stored:
-- detokenize answers never are, and the vault refuses to store any answer
-- holding something that looks like a card number.
CREATE TABLE idempotency_keys (
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key    text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    api_key_id         uuid,                  -- the API key of the request that holds or held it
    fingerprint        bytea       NOT NULL CHECK (length(fingerprint) = 32),
    fingerprint_key_id bigint      NOT NULL,  -- Tink key id of the PRF that made it
    state              text        NOT NULL CHECK (state IN ('running', 'done')),
    lock_id            uuid        NOT NULL,  -- names the request that runs it; renewed in locked_at
    locked_at          timestamptz NOT NULL,
    response_status    smallint    CHECK (response_status BETWEEN 100 AND 499),
    response_body      bytea,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key),
    CHECK ((state = 'done') = (response_status IS NOT NULL AND response_body IS NOT NULL))
);
-- The sweeper deletes expired rows in expiry order.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
