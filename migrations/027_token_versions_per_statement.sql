-- A statement writing card versions checks their data keys as a statement
-- writing tokens does (migration 026), and the prune's index costs the
-- writers next to nothing.
--
-- Before: three foreign keys on token_versions, each a row trigger for
-- every version inserted (a lookup and a KEY SHARE lock of its parent row:
-- 48 of them for a batch of 16 replaced cards): to tokens (ON DELETE
-- CASCADE), to tenants (ON DELETE CASCADE) and to tenant_sealing_keys
-- (token_versions_sealing_key, migration 012). And a B-tree on replaced_at,
-- one more entry per version, read only by the hourly prune.
--
-- Now, with the same guarantees for every writer of token_versions:
-- - a statement inserting versions locks each distinct (tenant, key) of
--   the rows it inserted, in order, through cardvault_lock_sealing_key:
--   the KEY SHARE lock the foreign key took, and the same error (23503 on
--   token_versions_sealing_key) when the key was retired, at the end of
--   the statement;
-- - an update that changes a version's tenant or key (the re-encryption
--   job) locks the new key the same way;
-- - deleting (or renaming) a tenant_sealing_keys row while a version names
--   it is refused with 23503 on token_versions_sealing_key, as the foreign
--   key's NO ACTION was;
-- - deleting a token deletes its versions, row by row in the same
--   statement, as the cascade did. A version is only ever written for a
--   token its writer holds locked (FOR UPDATE, in the same transaction),
--   so none can name a token that is being deleted.
-- The tenant foreign key goes without a replacement, as tokens' did in
-- 026: a version's sealing-key row names its tenant, and tenants are never
-- deleted (a shred deletes the tenant's tokens, and so their versions).
-- replaced_at is indexed with BRIN instead: versions are appended in the
-- order they are replaced, so the block ranges summarize it well, and an
-- insert costs no B-tree descent. Versions already in the table are not
-- checked.

ALTER TABLE token_versions DROP CONSTRAINT token_versions_token_id_fkey;
ALTER TABLE token_versions DROP CONSTRAINT token_versions_tenant_id_fkey;
ALTER TABLE token_versions DROP CONSTRAINT token_versions_sealing_key;

CREATE FUNCTION cardvault_token_versions_inserted_sealing_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_sealing_key(k.tenant_id, k.key_id, 'token_versions_sealing_key')
    FROM (SELECT DISTINCT tenant_id, key_id FROM new_versions ORDER BY tenant_id, key_id) k;
    RETURN NULL;
END $$;

CREATE TRIGGER token_versions_sealing_key_insert AFTER INSERT ON token_versions
    REFERENCING NEW TABLE AS new_versions
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_token_versions_inserted_sealing_keys();

CREATE FUNCTION cardvault_token_versions_updated_sealing_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_sealing_key(NEW.tenant_id, NEW.key_id, 'token_versions_sealing_key');
    RETURN NEW;
END $$;

CREATE TRIGGER token_versions_sealing_key_update BEFORE UPDATE OF tenant_id, key_id ON token_versions
    FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.key_id IS DISTINCT FROM OLD.key_id)
    EXECUTE FUNCTION cardvault_token_versions_updated_sealing_key();

CREATE FUNCTION cardvault_sealing_key_names_no_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM token_versions WHERE tenant_id = OLD.tenant_id AND key_id = OLD.key_id) THEN
        RAISE foreign_key_violation USING CONSTRAINT = 'token_versions_sealing_key',
            MESSAGE = format('data key %s of tenant %s still seals card versions', OLD.key_id, OLD.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER token_versions_sealing_key_parent AFTER DELETE OR UPDATE OF tenant_id, key_id ON tenant_sealing_keys
    FOR EACH ROW EXECUTE FUNCTION cardvault_sealing_key_names_no_version();

CREATE FUNCTION cardvault_token_deleted_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM token_versions WHERE token_id = OLD.id;
    RETURN NULL;
END $$;

CREATE TRIGGER token_versions_of_deleted_token AFTER DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION cardvault_token_deleted_versions();

DROP INDEX token_versions_replaced;
CREATE INDEX token_versions_replaced ON token_versions USING brin (replaced_at);
