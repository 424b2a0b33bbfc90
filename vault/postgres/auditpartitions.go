package postgres

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AuditPartitionsAhead is how many months after the current one always
// have their audit partition.
const AuditPartitionsAhead = 2

// EnsureAuditPartitions creates the monthly audit partitions of the current
// month (by the service clock, UTC) and the AuditPartitionsAhead months
// after it that do not exist yet. It returns how many it created and how
// many rows the DEFAULT partition holds (rows whose month had no partition:
// it logs a warning when there are any), and the database's error.
func (s *Service) EnsureAuditPartitions(ctx context.Context) (created int, inDefault int64, err error) {
	if err := s.db.QueryRow(ctx, `SELECT audit_events_ensure_partitions($1, $2)`,
		s.clock(), AuditPartitionsAhead).Scan(&created); err != nil {
		return 0, 0, dbError(err, "audit partition")
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM audit_events_default`).Scan(&inDefault); err != nil {
		return created, 0, dbError(err, "audit partition")
	}
	if created > 0 {
		s.log.Info("audit partitions created", "count", created)
	}
	if inDefault > 0 {
		s.log.Warn("audit rows in the default partition: their month had no partition", "count", inDefault)
	}
	return created, inDefault, nil
}

// AuditPartitionDrop is one monthly audit partition dropped by retention.
type AuditPartitionDrop struct {
	Name    string        // the partition's table, audit_events_YYYY_MM
	Rows    int64         // rows it held
	Deleted int64         // rows of its lanes in later partitions deleted with it
	Took    time.Duration // time to detach and drop it (after the checks)
}

// auditPartition is one monthly partition and its upper bound.
type auditPartition struct {
	name string
	hi   time.Time
}

// DropAuditPartitions drops, oldest first, every monthly audit partition
// entirely older than the retention whose rows a verified checkpoint covers
// (audit_verified of each lane at or past the partition's newest row of
// that lane). For each it moves the retention checkpoint of every lane it
// holds to the lane's newest row in it and writes one audit.prune row per
// chain naming the partition, its row count and the lanes' checkpoints;
// then it detaches and drops the partition. It stops at the first
// partition it may not drop and returns the partitions dropped, a
// KindInvalid error for a retention under MinAuditRetention, a
// KindConflict error naming the partition and why it was refused, or the
// database's error.
func (s *Service) DropAuditPartitions(ctx context.Context, retention time.Duration) ([]AuditPartitionDrop, error) {
	if retention < vault.MinAuditRetention {
		return nil, vault.Errorf(vault.KindInvalid, vault.CodeInvalidRetention, "the audit retention must be at least one day")
	}
	cutoff := s.clock().Add(-retention)
	parts, err := s.expiredPartitions(ctx, cutoff)
	if err != nil {
		return nil, dbError(err, "audit partition")
	}
	var out []AuditPartitionDrop
	for _, p := range parts {
		d, err := s.dropPartition(ctx, p, cutoff)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	return out, nil
}

// expiredPartitions lists the monthly partitions whose upper bound is at
// or before cutoff, oldest first.
func (s *Service) expiredPartitions(ctx context.Context, cutoff time.Time) ([]auditPartition, error) {
	rows, err := s.db.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass AND c.relname ~ '^audit_events_[0-9]{4}_[0-9]{2}$'
		ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var out []auditPartition
	for _, n := range names {
		lo, err := time.Parse("2006_01", n[len("audit_events_"):])
		if err != nil {
			return nil, err
		}
		if hi := lo.AddDate(0, 1, 0); !hi.After(cutoff) {
			out = append(out, auditPartition{name: n, hi: hi})
		}
	}
	return out, nil
}

// partitionLane is what one partition holds of one lane.
type partitionLane struct {
	chain           uuid.UUID
	lane            int16
	rows, maxSeq    int64
	maxHash         []byte
	prunedSeq       int64
	verifiedSeq     int64
	hasVerification bool
}

// dropPartition moves the checkpoints of the partition's lanes past its
// rows (one transaction holding the lanes, like every audit write), then
// detaches and drops it (a second, holding no lane, so writers never wait
// on a lane while the drop waits on the table).
func (s *Service) dropPartition(ctx context.Context, p auditPartition, cutoff time.Time) (AuditPartitionDrop, error) {
	d := AuditPartitionDrop{Name: p.name}
	err := s.inTx(ctx, "audit partition", func(tx pgx.Tx) error {
		lanes, err := s.checkpointPartition(ctx, tx, p, cutoff, &d)
		if err != nil {
			return err
		}
		return s.auditPartitionDrop(ctx, tx, p, cutoff, lanes, d.Rows)
	})
	if err != nil {
		return d, err
	}
	start := time.Now()
	err = s.inTx(ctx, "audit partition", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE audit_events DETACH PARTITION %s`, pgx.Identifier{p.name}.Sanitize())); err != nil {
			return err
		}
		var left int64
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s p LEFT JOIN audit_lanes l
			ON l.chain_id = coalesce(p.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) AND l.lane = p.chain_lane
			WHERE l.chain_id IS NULL OR p.chain_seq > l.pruned_seq`, pgx.Identifier{p.name}.Sanitize())).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return vault.Errorf(vault.KindConflict, vault.CodeConflict,
				"audit partition %s: %d rows were written past its checkpoints: not dropped", p.name, left)
		}
		_, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{p.name}.Sanitize())
		return err
	})
	d.Took = time.Since(start)
	if err != nil {
		return d, err
	}
	s.log.Info("audit partition dropped", "partition", p.name, "rows", d.Rows, "deleted_later", d.Deleted,
		"seconds", d.Took.Seconds())
	return d, nil
}

// checkpointPartition checks that a verified checkpoint covers every row
// of the partition, deletes its lanes' few rows with older sequence numbers
// that sit in later partitions (rows commit slightly out of time order;
// they must be older than cutoff too), and moves each lane's retention
// checkpoint to its newest row in the partition. It returns the lanes.
func (s *Service) checkpointPartition(ctx context.Context, tx pgx.Tx, p auditPartition, cutoff time.Time, d *AuditPartitionDrop) ([]partitionLane, error) {
	ident := pgx.Identifier{p.name}.Sanitize()
	if _, err := tx.Exec(ctx, `LOCK TABLE `+ident+` IN SHARE MODE`); err != nil {
		return nil, err
	}
	var legacy int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+ident+` WHERE chain_lane IS NULL`).Scan(&legacy); err != nil {
		return nil, err
	}
	if legacy > 0 {
		return nil, s.refuse(p, "%d rows are from before lanes (pruned row by row first)", legacy)
	}
	rows, err := tx.Query(ctx, `WITH t AS (SELECT `+chainKey+` AS chain, chain_lane, count(*) AS n, max(chain_seq) AS top
			FROM `+ident+` GROUP BY 1, 2)
		SELECT t.chain, t.chain_lane, t.n, t.top, e.row_hash, l.pruned_seq, v.seq IS NOT NULL, coalesce(v.seq, 0)
		FROM t JOIN audit_lanes l ON l.chain_id = t.chain AND l.lane = t.chain_lane
		JOIN `+ident+` e ON `+chainKey+` = t.chain AND e.chain_lane = t.chain_lane AND e.chain_seq = t.top
		LEFT JOIN audit_verified v ON v.chain_id = t.chain AND v.lane = t.chain_lane
		ORDER BY t.chain, t.chain_lane FOR UPDATE OF l`)
	if err != nil {
		return nil, err
	}
	lanes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (partitionLane, error) {
		var l partitionLane
		err := r.Scan(&l.chain, &l.lane, &l.rows, &l.maxSeq, &l.maxHash, &l.prunedSeq, &l.hasVerification, &l.verifiedSeq)
		return l, err
	})
	if err != nil {
		return nil, err
	}
	for _, l := range lanes {
		d.Rows += l.rows
		if l.maxSeq <= l.prunedSeq {
			continue // checkpointed by an earlier run that did not get to drop it
		}
		if !l.hasVerification || l.verifiedSeq < l.maxSeq {
			return nil, s.refuse(p, "no verified checkpoint covers chain %s lane %d through seq %d (verified through %d): run audit verify",
				chainName(l.chain), l.lane, l.maxSeq, l.verifiedSeq)
		}
		n, err := s.deleteStragglers(ctx, tx, p, l, cutoff)
		if err != nil {
			return nil, err
		}
		d.Deleted += n
		if _, err := tx.Exec(ctx, `UPDATE audit_lanes SET pruned_seq = $3, pruned_hash = $4, updated_at = $5
			WHERE chain_id = $1 AND lane = $2`, l.chain, l.lane, l.maxSeq, l.maxHash, s.clock()); err != nil {
			return nil, err
		}
	}
	return lanes, nil
}

// deleteStragglers deletes the rows of lane l after its checkpoint and
// through its newest row in the partition that sit in other partitions;
// it refuses when one of them is not older than cutoff.
func (s *Service) deleteStragglers(ctx context.Context, tx pgx.Tx, p auditPartition, l partitionLane, cutoff time.Time) (int64, error) {
	where := chainKey + ` = $1 AND chain_lane = $2 AND chain_seq > $3 AND chain_seq <= $4 AND tableoid <> $5::regclass`
	var n int64
	var newest *time.Time
	if err := tx.QueryRow(ctx, `SELECT count(*), max(occurred_at) FROM audit_events WHERE `+where,
		l.chain, l.lane, l.prunedSeq, l.maxSeq, p.name).Scan(&n, &newest); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if !newest.Before(cutoff) {
		return 0, s.refuse(p, "chain %s lane %d has rows through seq %d in a later month still within the retention",
			chainName(l.chain), l.lane, l.maxSeq)
	}
	tag, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE `+where, l.chain, l.lane, l.prunedSeq, l.maxSeq, p.name)
	return tag.RowsAffected(), err
}

// refuse logs and returns why partition p is not dropped.
func (s *Service) refuse(p auditPartition, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	s.log.Warn("audit partition not dropped", "partition", p.name, "reason", msg)
	return vault.Errorf(vault.KindConflict, vault.CodeConflict, "audit partition %s not dropped: %s", p.name, msg)
}

// auditPartitionDrop writes one audit.prune row per chain the partition
// holds rows of, naming the partition, its row count and the new
// retention checkpoint of each of the chain's lanes in it.
func (s *Service) auditPartitionDrop(ctx context.Context, tx pgx.Tx, p auditPartition, cutoff time.Time, lanes []partitionLane, total int64) error {
	type laneCheckpoint struct {
		Lane        int16  `json:"lane"`
		ThroughSeq  int64  `json:"through_seq"`
		ThroughHash string `json:"through_hash"`
		Pruned      int64  `json:"pruned"`
	}
	byChain := map[uuid.UUID][]laneCheckpoint{}
	var order []uuid.UUID
	for _, l := range lanes {
		if byChain[l.chain] == nil {
			order = append(order, l.chain)
		}
		byChain[l.chain] = append(byChain[l.chain], laneCheckpoint{Lane: l.lane, ThroughSeq: l.maxSeq,
			ThroughHash: hex.EncodeToString(l.maxHash), Pruned: l.rows})
	}
	for _, c := range order {
		var n int64
		for _, l := range byChain[c] {
			n += l.Pruned
		}
		if err := s.insertAudit(ctx, tx, s.event(vault.Actor{TenantID: c, ClientAddr: "audit-pruner"}, vault.ActionAuditPrune, uuid.Nil,
			map[string]any{"partition": p.name, "pruned": n, "partition_rows": total, "lanes": byChain[c],
				"older_than": cutoff.Format(time.RFC3339Nano)})); err != nil {
			return err
		}
	}
	return nil
}
