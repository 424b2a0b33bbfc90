package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ForgeLane does what a DBA without the KEK could do to hide an edit: it
// recomputes the hash of every row of the lane from seq on, in order, and
// the lane's head, with key (plain SHA-256 when key is nil) instead of the
// chain's real key, and stores them with the written-once trigger off.
func ForgeLane(ctx context.Context, pool *pgxpool.Pool, chain uuid.UUID, lane int16, seq int64, key []byte) error {
	rows, err := readLaneRows(ctx, pool, laneID{chain, lane}, seq-1, 1<<30)
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		return err
	}
	prev := rows[0].prev
	for _, r := range rows {
		r.prev = prev
		enc, err := r.encodeV2()
		if err != nil {
			return err
		}
		var h []byte
		if key == nil {
			sum := sha256.Sum256(enc)
			h = sum[:]
		} else {
			m := hmac.New(sha256.New, key)
			m.Write(enc)
			h = m.Sum(nil)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_events SET prev_hash = $2, row_hash = $3 WHERE id = $1`, r.id, prev, h); err != nil {
			return err
		}
		prev = h
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_lanes SET hash = $3 WHERE chain_id = $1 AND lane = $2`, chain, lane, prev); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
