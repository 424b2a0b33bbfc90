-- The card a token held before an update replaced its number or expiry,
-- kept sealed for the card-history retention (VAULT_CARD_HISTORY_RETENTION,
-- default 30 days) so that a wrong replacement can be found and undone.
-- The ciphertexts are the replaced ones, moved here as they were: bound to
-- the tenant, the token id and the field, under the data key key_id, which
-- the foreign key locks like a token's (migration 008), so a retire waits
-- for writers and refuses while a version needs the key; the re-encryption
-- job re-seals versions too. The CVC is never kept. Deleting the token
-- deletes its versions.
CREATE TABLE token_versions (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_id           uuid        NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    tenant_id          uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id             bigint      NOT NULL,
    pan_ct             bytea       NOT NULL,
    name_ct            bytea,
    fingerprint        bytea       NOT NULL,
    fingerprint_key_id bigint      NOT NULL,
    iin                text        NOT NULL CHECK (iin ~ '^[0-9]{6}$'),
    last_four          text        NOT NULL CHECK (last_four ~ '^[0-9]{4}$'),
    pan_length         smallint    NOT NULL CHECK (pan_length BETWEEN 12 AND 19),
    scheme             text        NOT NULL,
    exp_month          smallint    NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year           smallint    NOT NULL CHECK (exp_year BETWEEN 2000 AND 2099),
    valid_from         timestamptz NOT NULL,  -- when this card became the token's
    replaced_at        timestamptz NOT NULL,
    CONSTRAINT token_versions_sealing_key FOREIGN KEY (tenant_id, key_id) REFERENCES tenant_sealing_keys (tenant_id, key_id)
);
CREATE INDEX token_versions_token ON token_versions (token_id, id DESC);
CREATE INDEX token_versions_tenant_key ON token_versions (tenant_id, key_id);
CREATE INDEX token_versions_replaced ON token_versions (replaced_at);
