package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/internal/loop"
)

// Forwarding rows under the key hierarchy: the re-encryption job re-seals
// them under the primary data key, and a retire counts what still needs a
// key. (The foreign keys to tenant_sealing_keys, migration 009, are what
// makes a retire refuse while one does.)

// forwardResealBatch is how many forwarding records one transaction re-seals.
const forwardResealBatch = 500

// forwardingRowsUnderKey counts the tenant's forwarding records and live
// destination secrets sealed with keyID.
func forwardingRowsUnderKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM forwarding_requests WHERE tenant_id = $1 AND key_id = $2) +
		(SELECT count(*) FROM forwarding_destinations WHERE tenant_id = $1 AND key_id = $2)`,
		tenantID, int64(keyID)).Scan(&n)
	return n, err
}

// resealForwarding re-seals, under tk's primary data key, every forwarding
// record and destination secret of the tenant still under another key: the
// records a batch per transaction, then the destinations. Rows a forward is
// writing are skipped and taken by a later batch, so it returns only once
// no row is left off the primary key (or ctx ends). It returns how many
// rows it re-sealed.
func (s *Service) resealForwarding(ctx context.Context, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	total, after := 0, "" // after: the walk's cursor (see reencryptOnce)
	for {
		var n int
		err := s.inTx(ctx, "forwarding request", func(tx pgx.Tx) error {
			var err error
			n, after, err = s.resealForwardBatch(ctx, tx, tenantID, tk, after)
			return err
		})
		total += n
		if err != nil || n > 0 {
			if err != nil {
				return total, err
			}
			continue
		}
		after = "" // a later pass takes the records forwards held
		left, err := forwardingRowsOffKey(ctx, s.db, tenantID, tk.sealer.PrimaryKeyID())
		if err != nil || left == 0 {
			return total, dbError(err, "forwarding request")
		}
		if err := loop.Sleep(ctx, 50*time.Millisecond); err != nil { // the rest is being written by forwards
			return total, err
		}
	}
}

// forwardingRowsOffKey counts the tenant's forwarding rows sealed with
// another key than keyID.
func forwardingRowsOffKey(ctx context.Context, q querier, tenantID uuid.UUID, keyID uint32) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM forwarding_requests WHERE tenant_id = $1 AND key_id <> $2) +
		(SELECT count(*) FROM forwarding_destinations WHERE tenant_id = $1 AND key_id <> $2)`,
		tenantID, int64(keyID)).Scan(&n)
	return n, err
}

// resealForwardBatch re-seals up to forwardResealBatch of the tenant's
// records not under tk's primary key with ids after after, in id order, and
// returns how many and the last one's id. When no such record is left it
// re-seals the destinations' secrets instead and returns their count, with
// after unchanged.
func (s *Service) resealForwardBatch(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys, after string) (int, string, error) {
	primary := int64(tk.sealer.PrimaryKeyID())
	rows, err := tx.Query(ctx, `SELECT id, request_ct, response_ct FROM forwarding_requests
		WHERE tenant_id = $1 AND key_id <> $2 AND id > $4 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`,
		tenantID, primary, forwardResealBatch, after)
	if err != nil {
		return 0, after, err
	}
	type sealed struct {
		id        string
		req, resp []byte
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealed, error) {
		var x sealed
		return x, r.Scan(&x.id, &x.req, &x.resp)
	})
	if err != nil {
		return 0, after, err
	}
	for i, x := range batch {
		if batch[i].req, err = s.resealSide(tk, tenantID, x.id, fieldForwardRequest, x.req); err != nil {
			return 0, after, err
		}
		if batch[i].resp, err = s.resealSide(tk, tenantID, x.id, fieldForwardResponse, x.resp); err != nil {
			return 0, after, err
		}
		if _, err := tx.Exec(ctx, `UPDATE forwarding_requests SET request_ct = $3, response_ct = $4, key_id = $5
			WHERE tenant_id = $1 AND id = $2`, tenantID, x.id, batch[i].req, batch[i].resp, primary); err != nil {
			return 0, after, err
		}
	}
	if len(batch) > 0 {
		return len(batch), batch[len(batch)-1].id, nil
	}
	n, err := s.resealDestinations(ctx, tx, tenantID, tk)
	return n, after, err
}

// resealDestinations re-seals the secrets of the tenant's destinations not
// under tk's primary key and returns how many it re-sealed.
func (s *Service) resealDestinations(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, tk *tenantKeys) (int, error) {
	primary := int64(tk.sealer.PrimaryKeyID())
	rows, err := tx.Query(ctx, `SELECT `+destinationColumns+` FROM forwarding_destinations
		WHERE tenant_id = $1 AND key_id <> $2 FOR UPDATE`, tenantID, primary)
	if err != nil {
		return 0, err
	}
	dests, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (destinationRow, error) { return scanDestination(r) })
	if err != nil {
		return 0, err
	}
	for _, d := range dests {
		sig, err := s.resealSide(tk, tenantID, d.ID, fieldSignatureKey, d.signatureCT)
		if err != nil {
			return 0, err
		}
		cert, err := s.resealSide(tk, tenantID, d.ID, fieldClientCert, d.clientCertCT)
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, `UPDATE forwarding_destinations SET signature_ct = $3, client_cert_ct = $4, key_id = $5
			WHERE tenant_id = $1 AND id = $2`, tenantID, d.ID, sig, cert, primary); err != nil {
			return 0, err
		}
	}
	return len(dests), nil
}

// resealSide opens a side row's field (any enabled key) and seals it under
// tk's primary key; nil stays nil.
func (s *Service) resealSide(tk *tenantKeys, tenantID uuid.UUID, rowID, field string, ct []byte) ([]byte, error) {
	if ct == nil {
		return nil, nil
	}
	pt, err := s.openSide(tk, tenantID, rowID, field, ct)
	if err != nil {
		return nil, err
	}
	return s.sealSide(tk, tenantID, rowID, field, pt)
}
