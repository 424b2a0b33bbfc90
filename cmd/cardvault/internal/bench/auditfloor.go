package bench

import (
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// PhaseBaselineAudit is PostgreSQL alone doing the database's share of a
// read: for each read of a batch, find its token and write its audit row,
// one durable commit per batch, with no vault, HTTP or crypto in the way.
const PhaseBaselineAudit = "baseline-audit"

// auditFloorBatches is how many baseline-audit batches are in flight, as
// the vault writes at most two read batches at once (readBatchesInFlight in
// vault/postgres).
const auditFloorBatches = 2

// benchAuditSQL creates bench_audit: the audit table's columns, checks and
// indexes (one plain table: the partition the vault writes into, without
// the routing).
const benchAuditSQL = `CREATE TABLE bench_audit (LIKE audit_events INCLUDING ALL)`

// auditFloorSQL finds the batch's tokens in the vault's table and writes one
// audit-shaped row for each, chain columns filled as the vault fills them,
// in the statement shape of the vault's read batch.
const auditFloorSQL = `
	WITH req AS (
		SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bytea[]) WITH ORDINALITY
		AS r(token_id, seq, prev_hash, row_hash, ord)
	), ins AS (
		INSERT INTO bench_audit (occurred_at, tenant_id, api_key_id, action, token_id, request_id, client_addr,
			outcome, detail, chain_lane, chain_seq, prev_hash, row_hash)
		SELECT $5, k.tenant_id, $6, 'token.read', k.id, 'req_bench', '127.0.0.1', 'success',
			'{"route":"/tokens/{id}"}', 0, r.seq, r.prev_hash, r.row_hash
		FROM req r JOIN tokens k ON k.id = r.token_id
	)
	SELECT ` + benchTokenColumns + ` FROM tokens WHERE id = ANY($1)`

// auditFloorBatch returns the baseline-audit batch size: the reads one of
// the vault's read batches holds when every request of the phase is in
// one of its batches in flight.
func (b *benchRun) auditFloorBatch() int { return max(b.o.Concurrency/auditFloorBatches, 1) }

// baselineAudit writes one batch of read audits: a transaction of one
// statement and a durable commit, sent in one round trip.
func (b *benchRun) baselineAudit(ctx context.Context, w, i int) error {
	if len(b.allRows) == 0 {
		return errors.New("tokenize left no tokens to read")
	}
	n := b.auditFloorBatch()
	ids, seqs, prev, hash := make([]uuid.UUID, n), make([]int64, n), make([][]byte, n), make([][]byte, n)
	for j := range n {
		ids[j], seqs[j] = b.allRows[mrand.IntN(len(b.allRows))], int64(w)<<40|int64(i*n+j+1)
		prev[j], hash[j] = make([]byte, 32), make([]byte, 32)
		_, _ = rand.Read(hash[j])
	}
	var batch pgx.Batch
	batch.Queue("BEGIN")
	batch.Queue(auditFloorSQL, ids, seqs, prev, hash, time.Now().UTC(), b.env.tenantID)
	batch.Queue("COMMIT")
	return b.env.pool.SendBatch(ctx, &batch).Close()
}

// timedAuditFloor runs baseline-audit with auditFloorBatches workers and
// counts reads, not batches.
func (b *benchRun) timedAuditFloor(ctx context.Context) e2e.Result {
	res := e2e.RunLoad(ctx, e2e.LoadOptions{Name: PhaseBaselineAudit, Workers: auditFloorBatches, Warmup: b.o.Warmup,
		Duration: b.o.Duration, Progress: b.o.Progress}, b.baselineAudit)
	n := int64(b.auditFloorBatch())
	res.Requests, res.All = res.Requests*n, res.All*n
	return res
}
