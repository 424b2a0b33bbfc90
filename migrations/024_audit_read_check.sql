-- A read batch writes its audit rows in the same statement that finds its
-- tokens, chained in the vault after lane heads it remembers from its last
-- batch (no round trip to lock them first). The statement advances each
-- lane only where it still stands at the remembered head, and calls this
-- function once with whether every lane advanced and every token was found:
-- when not, the error (SQLSTATE CV001) rolls the whole statement back, so no
-- row is written after a head that moved and no lane advances without its
-- rows, and the vault redoes the batch the ordinary way (lock, then write).
CREATE FUNCTION audit_read_chained(ok boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'audit lane head moved, or a token of the batch was not found' USING ERRCODE = 'CV001';
    END IF;
    RETURN true;
END $$;
