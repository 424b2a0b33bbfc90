-- A keyed digest of each token's card: the PRF (HMAC-SHA256) of the
-- tenant's primary fingerprint key over the PAN, expiry, cardholder name
-- and CVC, never a plain hash. A repeated import of the card a business key
-- already holds is recognised by one indexed read, without decrypting and
-- without rewriting the row. NULL for tokens written before it (they take
-- the slower path, which fills it).
ALTER TABLE tokens ADD COLUMN card_digest bytea;
