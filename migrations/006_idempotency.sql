-- Idempotency keys (Stripe semantics): the first answer to a POST carrying
-- an Idempotency-Key is kept for 24 hours per tenant and key, so a retry
-- replays it instead of running again.
--
-- No column holds card data. The client's key and its request are kept only
-- as keyed hashes (the tenant's PRF keyset; PCI DSS 3.5.1.1), never in the
-- clear: the request body carries the PAN and CVC, and a key might. Only
-- masked answers are stored: detokenize answers never are, and the vault
-- refuses to store any answer holding something that looks like a card
-- number.
CREATE TABLE idempotency_keys (
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash           bytea       NOT NULL CHECK (length(key_hash) = 32),  -- PRF of the Idempotency-Key
    api_key_id         uuid,                  -- the API key of the request that holds or held it
    fingerprint        bytea       NOT NULL CHECK (length(fingerprint) = 32),
    fingerprint_key_id bigint      NOT NULL,  -- Tink key id of the PRF that made both hashes
    state              text        NOT NULL CHECK (state IN ('running', 'done')),
    lock_id            uuid        NOT NULL,  -- names the request that runs it; renewed in locked_at
    locked_at          timestamptz NOT NULL,
    response_status    smallint    CHECK (response_status BETWEEN 100 AND 499),
    response_body      bytea,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_hash),
    CHECK ((state = 'done') = (response_status IS NOT NULL AND response_body IS NOT NULL))
);
-- The sweeper deletes expired rows in expiry order.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
