-- File import jobs: an OpenPGP-encrypted card file (Stripe's PAN export, a
-- jsonl file) imported as a durable job, like a Stripe import: any replica
-- can run it, a crashed run resumes after the last committed row.
--
-- The file is kept only as the sender encrypted it (to the tenant's own
-- import key), in chunks, and deleted when the job ends. The clear rows
-- never reach the database except as sealed tokens. import_file_rows is the
-- ledger and the mapping file: per row, the card's id in the file, the token
-- it gave or why it failed; never card data.
ALTER TABLE import_jobs DROP CONSTRAINT import_jobs_provider_check;
ALTER TABLE import_jobs ADD CONSTRAINT import_jobs_provider_check CHECK (provider IN ('stripe', 'file'));
ALTER TABLE import_jobs
    ADD COLUMN file_format text   NOT NULL DEFAULT '',
    ADD COLUMN file_size   bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_done   bigint NOT NULL DEFAULT 0;  -- the last row committed: where a run resumes

CREATE TABLE import_file_chunks (
    job_id uuid    NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    seq    integer NOT NULL,
    data   bytea   NOT NULL,  -- OpenPGP ciphertext only
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE import_file_rows (
    job_id     uuid   NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    row_number bigint NOT NULL,
    old_id     text   NOT NULL DEFAULT '',
    status     text   NOT NULL CHECK (status IN ('created', 'existing', 'failed')),
    token_id   uuid,
    reason     text   NOT NULL DEFAULT '',  -- error code and message; never card data
    PRIMARY KEY (job_id, row_number)
);
