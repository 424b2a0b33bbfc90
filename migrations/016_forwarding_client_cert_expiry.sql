-- A forwarding destination's mTLS client certificate's NotAfter, kept in
-- plain so that reading or listing the destination says until when it
-- presents the certificate without opening it (the certificate and its key
-- stay sealed in client_cert_ct). NULL when there is no certificate, and for
-- a certificate stored before this column existed. Removing the destination
-- clears it with the certificate.
ALTER TABLE forwarding_destinations ADD COLUMN client_cert_not_after timestamptz;
ALTER TABLE forwarding_destinations ADD CONSTRAINT forwarding_destinations_cert_expiry_with_cert
    CHECK (client_cert_not_after IS NULL OR client_cert_ct IS NOT NULL);
