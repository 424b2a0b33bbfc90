-- Stored idempotent answers hold masked token records, and so the
-- cardholder name, which the vault keeps sealed everywhere else: they are
-- sealed now too, with the tenant data keyset (associated data binds the
-- tenant and the key hash), in response_ct under data key key_id. The key
-- is locked like a token's (migration 008): a retire waits for writers and
-- refuses while an answer needs the key; the re-encryption job re-seals
-- answers too. response_body only holds answers stored before this
-- migration, replayed until they expire (24 hours); nothing writes it now.
ALTER TABLE idempotency_keys ADD COLUMN response_ct bytea, ADD COLUMN key_id bigint;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_done_check
    CHECK ((state = 'done') = (response_status IS NOT NULL AND (response_body IS NOT NULL OR response_ct IS NOT NULL)));
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_sealed_check CHECK ((response_ct IS NULL) = (key_id IS NULL));
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_sealing_key
    FOREIGN KEY (tenant_id, key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id);
CREATE INDEX idempotency_keys_tenant_key ON idempotency_keys (tenant_id, key_id) WHERE key_id IS NOT NULL;
