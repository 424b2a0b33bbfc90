-- The data keys a row may be sealed with, so that the database, not the
-- timing of replicas' key caches, guarantees that retiring a key never leaves
-- a row sealed under it.
--
-- A row of tenant_sealing_keys exists for each primary or active data key
-- version (tenant_key_versions says the same, with history); retiring a key
-- deletes its row in the transaction that disables it. Every writer of a
-- sealed row takes a KEY SHARE lock on the row of the key that sealed it in
-- the transaction that writes it: tokens and webhooks through a foreign key,
-- webhook events and import credentials (whose key id is only in the Tink
-- prefix) through a trigger. So a retire waits for writers already under
-- way and then sees their rows (and answers a conflict), and a writer that
-- comes after the retire is refused (SQLSTATE 23503 on a constraint named
-- *_sealing_key) and seals again with the current primary key.

CREATE TABLE tenant_sealing_keys (
    tenant_id uuid   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id    bigint NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

INSERT INTO tenant_sealing_keys (tenant_id, key_id)
SELECT tenant_id, key_id FROM tenant_key_versions WHERE purpose = 'data' AND state IN ('primary', 'active');

-- Existing rows are not checked (NOT VALID): a row already sealed under a
-- retired key cannot be fixed here, and must not stop the migration. New and
-- changed rows are checked, and so is every retire.
ALTER TABLE tokens ADD CONSTRAINT tokens_sealing_key
    FOREIGN KEY (tenant_id, key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id) NOT VALID;
ALTER TABLE webhooks ADD CONSTRAINT webhooks_sealing_key
    FOREIGN KEY (tenant_id, key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id) NOT VALID;

-- cardvault_lock_sealing_key takes the KEY SHARE lock a foreign key would
-- take on the row of a tenant's data key, and raises foreign_key_violation
-- on constraint name when the key may no longer seal.
CREATE FUNCTION cardvault_lock_sealing_key(tenant uuid, key bigint, name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tenant_sealing_keys WHERE tenant_id = tenant AND key_id = key FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE foreign_key_violation USING CONSTRAINT = name,
            MESSAGE = format('data key %s of tenant %s is retired: seal again with the primary key', key, tenant);
    END IF;
END $$;

-- cardvault_tink_key_id returns the key id in the TINK output prefix of a
-- ciphertext (version byte 0x01, then the key id big-endian), NULL for NULL.
CREATE FUNCTION cardvault_tink_key_id(ct bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (get_byte(ct, 1)::bigint << 24) | (get_byte(ct, 2)::bigint << 16)
         | (get_byte(ct, 3)::bigint << 8) | get_byte(ct, 4)::bigint
$$;

CREATE FUNCTION cardvault_webhook_events_sealing_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_sealing_key(NEW.tenant_id, NEW.key_id, 'webhook_events_sealing_key');
    RETURN NEW;
END $$;

CREATE TRIGGER webhook_events_sealing_key BEFORE INSERT OR UPDATE OF key_id, payload_ct ON webhook_events
    FOR EACH ROW WHEN (NEW.key_id IS NOT NULL) EXECUTE FUNCTION cardvault_webhook_events_sealing_key();

CREATE FUNCTION cardvault_import_jobs_sealing_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.provider_key_ct IS NOT NULL THEN
        PERFORM cardvault_lock_sealing_key(NEW.tenant_id, cardvault_tink_key_id(NEW.provider_key_ct), 'import_jobs_sealing_key');
    END IF;
    IF NEW.forward_key_ct IS NOT NULL THEN
        PERFORM cardvault_lock_sealing_key(NEW.tenant_id, cardvault_tink_key_id(NEW.forward_key_ct), 'import_jobs_sealing_key');
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER import_jobs_sealing_key BEFORE INSERT OR UPDATE OF provider_key_ct, forward_key_ct ON import_jobs
    FOR EACH ROW WHEN (NEW.provider_key_ct IS NOT NULL OR NEW.forward_key_ct IS NOT NULL)
    EXECUTE FUNCTION cardvault_import_jobs_sealing_key();
