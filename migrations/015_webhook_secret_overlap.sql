-- Webhook secret rotation with an overlap: for a window after a rotation
-- the previous signing secret still signs every delivery next to the new
-- one (Vault-Signature: t=…,v1=<new>,v1=<old>), so a receiver can switch
-- without dropping events. The previous secret is sealed like the current
-- one (same associated data: tenant, "webhook", URL) under data key
-- previous_key_id, which the foreign key locks like the current one's
-- (migration 008); the re-encryption job re-seals it, or drops it once its
-- window has closed.
ALTER TABLE webhooks
    ADD COLUMN previous_secret_ct  bytea,
    ADD COLUMN previous_key_id     bigint,
    ADD COLUMN previous_expires_at timestamptz,
    ADD CONSTRAINT webhooks_previous_check CHECK (
        (previous_secret_ct IS NULL) = (previous_key_id IS NULL)
        AND (previous_secret_ct IS NULL) = (previous_expires_at IS NULL)),
    ADD CONSTRAINT webhooks_previous_sealing_key
        FOREIGN KEY (tenant_id, previous_key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id);
