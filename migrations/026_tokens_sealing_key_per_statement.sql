-- A statement writing tokens locks each data key it sealed with once, not
-- once per token.
--
-- Before: two foreign keys on tokens, tokens_tenant_id_fkey (to tenants)
-- and tokens_sealing_key (to tenant_sealing_keys, migration 008). Each
-- fired a row trigger for every token inserted: a lookup and a KEY SHARE
-- lock of its parent row, 32 of them in a batch of 16 new tokens, all on
-- the same two rows. That was about a seventh of PostgreSQL's time for a
-- new token.
--
-- Now, with the same guarantees for every writer of tokens:
-- - a statement inserting tokens locks each distinct (tenant, key) of the
--   rows it inserted, in order, through cardvault_lock_sealing_key: the KEY
--   SHARE lock the foreign key took, and the same error (23503 on
--   tokens_sealing_key) when the key was retired, at the same moment (the
--   end of the statement);
-- - an update that changes a token's tenant or key locks the new key the
--   same way (as the foreign key did; an update keeping both checked
--   nothing);
-- - deleting (or renaming) a tenant_sealing_keys row while a token names it
--   is refused with 23503 on tokens_sealing_key, as the foreign key's NO
--   ACTION was: a retire that waited for the writers under way then sees
--   their tokens (the check runs in its own snapshot, taken after the
--   wait; every retire runs in READ COMMITTED).
-- The tenant foreign key goes without a replacement: a token's sealing-key
-- row names its tenant and has its own foreign key to it, and tenants are
-- never deleted (a shred deletes the tenant's tokens itself).
-- Tokens already in the table are not checked, as migration 008 did not.

ALTER TABLE tokens DROP CONSTRAINT tokens_tenant_id_fkey;
ALTER TABLE tokens DROP CONSTRAINT tokens_sealing_key;

CREATE FUNCTION cardvault_tokens_inserted_sealing_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_sealing_key(k.tenant_id, k.key_id, 'tokens_sealing_key')
    FROM (SELECT DISTINCT tenant_id, key_id FROM new_tokens ORDER BY tenant_id, key_id) k;
    RETURN NULL;
END $$;

CREATE TRIGGER tokens_sealing_key_insert AFTER INSERT ON tokens
    REFERENCING NEW TABLE AS new_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_tokens_inserted_sealing_keys();

CREATE FUNCTION cardvault_tokens_updated_sealing_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_sealing_key(NEW.tenant_id, NEW.key_id, 'tokens_sealing_key');
    RETURN NEW;
END $$;

CREATE TRIGGER tokens_sealing_key_update BEFORE UPDATE OF tenant_id, key_id ON tokens
    FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.key_id IS DISTINCT FROM OLD.key_id)
    EXECUTE FUNCTION cardvault_tokens_updated_sealing_key();

CREATE FUNCTION cardvault_sealing_key_names_no_token() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tokens WHERE tenant_id = OLD.tenant_id AND key_id = OLD.key_id) THEN
        RAISE foreign_key_violation USING CONSTRAINT = 'tokens_sealing_key',
            MESSAGE = format('data key %s of tenant %s still seals tokens', OLD.key_id, OLD.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tokens_sealing_key_parent AFTER DELETE OR UPDATE OF tenant_id, key_id ON tenant_sealing_keys
    FOR EACH ROW EXECUTE FUNCTION cardvault_sealing_key_names_no_token();
