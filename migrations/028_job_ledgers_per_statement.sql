-- A statement writing a job's ledger rows checks their job once, not once
-- per row, as migrations 026 and 027 did for tokens and card versions.
--
-- Before: import_items, import_file_rows and export_items each had a
-- foreign key to their job (ON DELETE CASCADE). Each fired a row trigger
-- for every ledger row inserted: a lookup and a KEY SHARE lock of the job
-- row, 500 of them for a batch of a card file's rows, all on the same row.
-- Measured over a 40,000-row card file (pg_stat_statements, two pairs):
-- the ledger insert took 417-500 ms with the foreign key and 229-237 ms
-- without, about 5 us of PostgreSQL's time a row.
--
-- Now, with the same guarantees for every writer of these tables:
-- - a statement inserting ledger rows locks each distinct job they name, in
--   order, KEY SHARE, through cardvault_lock_job: the lock the foreign key
--   took, and the same error (23503 on the foreign key's name) when the
--   job does not exist, at the same moment (the end of the statement);
-- - an update that moves a row to another job checks that job the same way;
-- - deleting a job deletes its ledger rows in the same statement, as the
--   cascade did (the retention prune deletes them first, in bounded
--   batches, so it finds none left);
-- - changing a job's id while a ledger row names it is refused with 23503,
--   as the foreign key's NO ACTION was.
-- Rows already in the tables are not checked again: the foreign keys
-- checked them when they were written.
-- import_file_chunks keeps its foreign key: a card file has a few chunks.

ALTER TABLE import_items DROP CONSTRAINT import_items_job_id_fkey;
ALTER TABLE import_file_rows DROP CONSTRAINT import_file_rows_job_id_fkey;
ALTER TABLE export_items DROP CONSTRAINT export_items_job_id_fkey;

-- cardvault_lock_job takes the KEY SHARE lock a foreign key from a ledger
-- row to its job (in jobs, import_jobs or export_jobs) would, and raises
-- its error, named name, when the job does not exist.
CREATE FUNCTION cardvault_lock_job(jobs regclass, job uuid, name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    found_job boolean;
BEGIN
    EXECUTE format('SELECT true FROM %s WHERE id = $1 FOR KEY SHARE', jobs) INTO found_job USING job;
    IF found_job IS NULL THEN
        RAISE foreign_key_violation USING CONSTRAINT = name,
            MESSAGE = format('job %s is not present in table %s', job, jobs);
    END IF;
END $$;

-- After a statement inserting ledger rows (TG_ARGV: the jobs table, the
-- constraint name).
CREATE FUNCTION cardvault_ledger_rows_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_job(TG_ARGV[0]::regclass, j.job_id, TG_ARGV[1])
    FROM (SELECT DISTINCT job_id FROM new_rows ORDER BY job_id) j;
    RETURN NULL;
END $$;

-- Before an update moving a ledger row to another job (same TG_ARGV).
CREATE FUNCTION cardvault_ledger_row_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cardvault_lock_job(TG_ARGV[0]::regclass, NEW.job_id, TG_ARGV[1]);
    RETURN NEW;
END $$;

CREATE TRIGGER import_items_job_insert AFTER INSERT ON import_items
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_ledger_rows_inserted('import_jobs', 'import_items_job_id_fkey');
CREATE TRIGGER import_items_job_update BEFORE UPDATE OF job_id ON import_items
    FOR EACH ROW WHEN (NEW.job_id IS DISTINCT FROM OLD.job_id)
    EXECUTE FUNCTION cardvault_ledger_row_moved('import_jobs', 'import_items_job_id_fkey');

CREATE TRIGGER import_file_rows_job_insert AFTER INSERT ON import_file_rows
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_ledger_rows_inserted('import_jobs', 'import_file_rows_job_id_fkey');
CREATE TRIGGER import_file_rows_job_update BEFORE UPDATE OF job_id ON import_file_rows
    FOR EACH ROW WHEN (NEW.job_id IS DISTINCT FROM OLD.job_id)
    EXECUTE FUNCTION cardvault_ledger_row_moved('import_jobs', 'import_file_rows_job_id_fkey');

CREATE TRIGGER export_items_job_insert AFTER INSERT ON export_items
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_ledger_rows_inserted('export_jobs', 'export_items_job_id_fkey');
CREATE TRIGGER export_items_job_update BEFORE UPDATE OF job_id ON export_items
    FOR EACH ROW WHEN (NEW.job_id IS DISTINCT FROM OLD.job_id)
    EXECUTE FUNCTION cardvault_ledger_row_moved('export_jobs', 'export_items_job_id_fkey');

-- After a statement deleting jobs: their rows in each ledger named in
-- TG_ARGV go with them.
CREATE FUNCTION cardvault_jobs_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0 .. TG_NARGS - 1 LOOP
        EXECUTE format('DELETE FROM %I WHERE job_id IN (SELECT id FROM gone_jobs)', TG_ARGV[i]);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER import_jobs_ledgers_delete AFTER DELETE ON import_jobs
    REFERENCING OLD TABLE AS gone_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_jobs_deleted('import_items', 'import_file_rows');
CREATE TRIGGER export_jobs_ledgers_delete AFTER DELETE ON export_jobs
    REFERENCING OLD TABLE AS gone_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION cardvault_jobs_deleted('export_items');

-- Before an update changing a job's id: refused while a row of a ledger
-- named in TG_ARGV names it, with that ledger's foreign key's error.
CREATE FUNCTION cardvault_job_renamed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    named boolean;
BEGIN
    FOR i IN 0 .. TG_NARGS - 1 LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE job_id = $1)', TG_ARGV[i]) INTO named USING OLD.id;
        IF named THEN
            RAISE foreign_key_violation USING CONSTRAINT = TG_ARGV[i] || '_job_id_fkey',
                MESSAGE = format('job %s is still named by rows of %s', OLD.id, TG_ARGV[i]);
        END IF;
    END LOOP;
    RETURN NEW;
END $$;

CREATE TRIGGER import_jobs_id_update BEFORE UPDATE OF id ON import_jobs
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION cardvault_job_renamed('import_items', 'import_file_rows');
CREATE TRIGGER export_jobs_id_update BEFORE UPDATE OF id ON export_jobs
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION cardvault_job_renamed('export_items');
