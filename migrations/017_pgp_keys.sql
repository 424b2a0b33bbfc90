-- A tenant's OpenPGP import keys: the key pair senders (Stripe's PAN export,
-- another vault) encrypt card files to. The public key is kept armored in
-- plain, to be published; the private key only wrapped by the root KEK with
-- associated data binding the tenant and the key id. Retiring a key drops
-- its private half for good; destroying the tenant deletes its keys.
CREATE TABLE pgp_keys (
    id                  uuid        PRIMARY KEY,
    tenant_id           uuid        NOT NULL REFERENCES tenants (id),
    fingerprint         text        NOT NULL,
    bits                integer     NOT NULL CHECK (bits >= 3072),
    public_key          text        NOT NULL,
    private_key_wrapped bytea,
    created_at          timestamptz NOT NULL,
    retired_at          timestamptz,
    CHECK ((retired_at IS NULL) = (private_key_wrapped IS NOT NULL))
);
CREATE INDEX pgp_keys_tenant ON pgp_keys (tenant_id, created_at);
