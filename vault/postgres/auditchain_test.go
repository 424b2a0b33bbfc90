package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/migrations"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// auditDatabase returns a freshly migrated database of the test's own on the
// package's server, dropped when the test ends: the audit tests verify,
// tamper with and prune whole chains, which must not see or touch the rows
// of the package's other tests.
func auditDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dbURL)
	require.NoError(t, err)
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer admin.Close(ctx)
	name := "cardvault_test_audit_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	u := withDatabase(t, dbURL, name)
	conn, err := pgx.Connect(ctx, u)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, migrations.Migrate(ctx, conn))
	return u
}

// withDatabase returns dsn (a URL or keyword/value string) naming database
// name instead.
func withDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// logBuffer collects JSON log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the logged records whose message is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// auditEnv is a vault on a database of its own.
type auditEnv struct {
	svc   *postgres.Service
	pool  *pgxpool.Pool
	clock *vaulttest.Clock
	logs  *logBuffer
	url   string
}

func newAuditEnv(t testing.TB) *auditEnv {
	t.Helper()
	e := &auditEnv{url: auditDatabase(t), clock: vaulttest.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)), logs: &logBuffer{}}
	e.svc = e.service(t)
	e.pool = vaulttest.Pool(t, e.url)
	return e
}

// service returns another replica of the vault on the env's database.
func (e *auditEnv) service(t testing.TB) *postgres.Service {
	t.Helper()
	return vaulttest.NewService(t, e.url, vaulttest.Options{Now: e.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
}

func (e *auditEnv) actor(t testing.TB) vault.Actor {
	t.Helper()
	_, secret := vaulttest.Tenant(t, e.svc)
	return vaulttest.Actor(t, e.svc, secret)
}

// tokenize stores n distinct cards for a.
func (e *auditEnv) tokenize(t *testing.T, a vault.Actor, n int) {
	t.Helper()
	for i := range n {
		_, _, err := e.svc.Tokenize(context.Background(), a, cardNo(i))
		require.NoError(t, err)
	}
}

func cardNo(i int) vault.TokenizeInput {
	return vault.TokenizeInput{Card: card.CardInput{
		Number: vaulttest.LuhnNumber("411111", 16, i), ExpMonth: "04", ExpYear: "2033", CVC: "123"}}
}

// failAuth writes a row of the system chain.
func (e *auditEnv) failAuth(t *testing.T) {
	t.Helper()
	_, err := e.svc.Authenticate(context.Background(), "cvk_nope", "req_bad", "192.0.2.1")
	require.Equal(t, vault.KindUnauthenticated, vault.ErrorKind(err))
	require.NoError(t, e.svc.FlushAccessFailures(context.Background()))
}

func (e *auditEnv) verify(t *testing.T, tenant *uuid.UUID) vault.AuditReport {
	t.Helper()
	r, err := e.svc.VerifyAudit(context.Background(), tenant)
	require.NoError(t, err)
	return r
}

// rowAt returns the id of the chain's row at seq.
func (e *auditEnv) rowAt(t *testing.T, tenant uuid.UUID, seq int64) int64 {
	t.Helper()
	var id int64
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT id FROM audit_events WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = $2`, tenant, seq).Scan(&id))
	return id
}

func (e *auditEnv) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := e.pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

// tamper runs sql as a DBA would: with the written-once trigger disabled.
func (e *auditEnv) tamper(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, `SET LOCAL session_replication_role = replica`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, sql, args...)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
}

func TestAuditChainVerifiesWithConcurrentWriters(t *testing.T) {
	e := newAuditEnv(t)
	actors := []vault.Actor{e.actor(t), e.actor(t), e.actor(t)}
	replica := e.service(t)
	const writers, perWriter = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := e.svc
			if w%2 == 1 {
				svc = replica // two processes write the same chains
			}
			for i := range perWriter {
				a := actors[(w+i)%len(actors)]
				tok, _, err := svc.Tokenize(context.Background(), a, cardNo(w*perWriter+i))
				if err == nil {
					_, err = svc.GetToken(context.Background(), a, tok.ID)
				}
				if err != nil {
					errs <- err
				}
				if i%5 == 0 {
					_, _ = svc.Authenticate(context.Background(), "cvk_nope", "req_bad", "192.0.2.1")
					_ = svc.FlushAccessFailures(context.Background())
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	r := e.verify(t, nil)
	require.True(t, r.OK, "breaks: %+v", r.Breaks)
	var total, lanes int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT (coalesce(tenant_id::text, ''), chain_lane))
		FROM audit_events`).Scan(&total, &lanes))
	assert.Equal(t, total, r.Rows, "every row is chained and verified")
	assert.Equal(t, 4, r.Chains, "three tenants and the system chain")
	assert.Zero(t, r.Unchained)
	assert.Greater(t, lanes, int64(4), "concurrent writers of one chain used more than one lane")

	rows, err := e.pool.Query(context.Background(), `SELECT coalesce(a.tenant_id::text, 'system'), a.chain_lane,
		count(*), min(chain_seq), max(chain_seq), max(l.seq)
		FROM audit_events a JOIN audit_lanes l ON l.chain_id = coalesce(a.tenant_id, '00000000-0000-0000-0000-000000000000')
		     AND l.lane = a.chain_lane
		GROUP BY 1, 2`)
	require.NoError(t, err)
	for rows.Next() {
		var chain string
		var lane int16
		var n, lo, hi, head int64
		require.NoError(t, rows.Scan(&chain, &lane, &n, &lo, &hi, &head))
		assert.Equal(t, []int64{1, n, n}, []int64{lo, hi, head}, "chain %s lane %d: seq runs 1…n without gaps, head at n", chain, lane)
	}
	require.NoError(t, rows.Err())
}

func TestAuditRowsAreWrittenOnce(t *testing.T) {
	e := newAuditEnv(t)
	a := e.actor(t)
	e.tokenize(t, a, 3)
	var unchained int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events
		WHERE chain_lane IS NULL OR row_hash IS NULL`).Scan(&unchained))
	assert.Zero(t, unchained, "every row is complete when inserted")
	_, err := e.pool.Exec(context.Background(), `UPDATE audit_events SET detail = '{}' WHERE tenant_id = $1`, a.TenantID)
	assert.ErrorContains(t, err, "audit rows are written once")
}

func TestAuditVerifyNamesTheFirstBadRow(t *testing.T) {
	type setup struct {
		e      *auditEnv
		tenant uuid.UUID
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, s setup)
		reason vault.AuditBreakReason
		seq    int64
		rowAt  int64 // the seq of the row the break names; 0 when none
	}{
		{"detail changed", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET detail = '{"reason":"nothing to see"}' WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 6`, s.tenant)
		}, vault.AuditChanged, 6, 6},
		{"time changed", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET occurred_at = occurred_at - interval '1 day' WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 7`, s.tenant)
		}, vault.AuditChanged, 7, 7},
		{"actor changed", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET api_key_id = NULL WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 8`, s.tenant)
		}, vault.AuditChanged, 8, 8},
		{"row deleted", func(t *testing.T, s setup) {
			s.e.tamper(t, `DELETE FROM audit_events WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 6`, s.tenant)
		}, vault.AuditMissing, 6, 7},
		{"row unchained", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET chain_lane = NULL, chain_seq = NULL, prev_hash = NULL, row_hash = NULL
				WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 5`, s.tenant)
		}, vault.AuditMissing, 5, 6},
		{"two rows' contents swapped", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events a SET action = b.action, token_id = b.token_id, detail = b.detail,
				occurred_at = b.occurred_at, request_id = b.request_id
				FROM audit_events b
				WHERE a.tenant_id = $1 AND b.tenant_id = $1 AND a.chain_lane = 0 AND b.chain_lane = 0 AND
				      ((a.chain_seq = 6 AND b.chain_seq = 9) OR (a.chain_seq = 9 AND b.chain_seq = 6))`, s.tenant)
		}, vault.AuditChanged, 6, 6},
		{"two rows reordered", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET chain_seq = 1000000 WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 6`, s.tenant)
			s.e.tamper(t, `UPDATE audit_events SET chain_seq = 6 WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 7`, s.tenant)
			s.e.tamper(t, `UPDATE audit_events SET chain_seq = 7 WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 1000000`, s.tenant)
		}, vault.AuditReordered, 6, 7}, // the row that moved to seq 6
		{"tail truncated", func(t *testing.T, s setup) {
			s.e.tamper(t, `DELETE FROM audit_events WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq > 10`, s.tenant)
		}, vault.AuditHeadMismatch, 11, 0},
		{"head rewritten", func(t *testing.T, s setup) {
			s.e.exec(t, `UPDATE audit_lanes SET hash = sha256(hash) WHERE chain_id = $1 AND lane = 0`, s.tenant)
		}, vault.AuditHeadMismatch, 13, 0},
		{"row rewritten and the rest re-hashed with SHA-256", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET detail = '{"reason":"nothing to see"}' WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 6`, s.tenant)
			require.NoError(t, postgres.ForgeLane(context.Background(), s.e.pool, s.tenant, 0, 6, nil))
		}, vault.AuditChanged, 6, 6},
		{"row rewritten and the rest re-hashed with a guessed key", func(t *testing.T, s setup) {
			s.e.tamper(t, `UPDATE audit_events SET detail = '{"reason":"nothing to see"}' WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 6`, s.tenant)
			require.NoError(t, postgres.ForgeLane(context.Background(), s.e.pool, s.tenant, 0, 6, make([]byte, 32)))
		}, vault.AuditChanged, 6, 6},
	}
	e := newAuditEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vaulttest.Truncate(t, e.pool)
			a := e.actor(t) // seq 1–3: tenant.create, keyset.create, api_key.create
			e.tokenize(t, a, 10)
			bystander := e.actor(t)
			e.tokenize(t, bystander, 2)
			e.failAuth(t)
			require.True(t, e.verify(t, nil).OK)
			var want int64
			if tt.rowAt > 0 {
				want = e.rowAt(t, a.TenantID, tt.rowAt)
			}

			tt.tamper(t, setup{e, a.TenantID})

			r := e.verify(t, nil)
			assert.False(t, r.OK)
			require.Len(t, r.Breaks, 1, "only the tampered chain breaks: %+v", r.Breaks)
			b := r.Breaks[0]
			assert.Equal(t, a.TenantID.String(), b.Chain)
			assert.Equal(t, tt.reason, b.Reason, b.Message)
			assert.Equal(t, tt.seq, b.Seq, b.Message)
			assert.Equal(t, want, b.ID, b.Message)
			assert.Equal(t, r.Breaks, e.verify(t, &a.TenantID).Breaks, "verifying the one tenant finds the same")
			assert.True(t, e.verify(t, &bystander.TenantID).OK, "other tenants' chains still verify")
			assert.True(t, e.verify(t, &vault.SystemChain).OK, "the system chain still verifies")
		})
	}
}

func TestAuditPruningKeepsVerifyGreen(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	e.tokenize(t, a, 20) // seq 1–23 at day 0
	e.failAuth(t)
	e.clock.Advance(300 * 24 * time.Hour)
	e.tokenize(t, a, 2) // seq 24–25 at day 300
	// A row stamped day 1 that is chained after the day-300 rows (a clock
	// step): pruning stops before the day-300 rows, so it stays.
	e.clock.Advance(-299 * 24 * time.Hour)
	e.tokenize(t, a, 1) // seq 26 at day 1
	e.clock.Advance(299 * 24 * time.Hour)

	n, err := e.svc.PruneAudit(ctx, vault.DefaultAuditRetention)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is older than 400 days yet")

	e.clock.Advance(150 * 24 * time.Hour) // day 450
	n, err = e.svc.PruneAudit(ctx, vault.DefaultAuditRetention)
	require.NoError(t, err)
	assert.Equal(t, int64(23+1), n, "the tenant's day-0 rows and the system chain's row")

	r := e.verify(t, nil)
	require.True(t, r.OK, "breaks: %+v", r.Breaks)
	assert.Equal(t, int64(24), r.Pruned)
	var left []string
	rows, err := e.pool.Query(ctx, `SELECT action FROM audit_events WHERE tenant_id = $1 ORDER BY chain_lane, chain_seq`, a.TenantID)
	require.NoError(t, err)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"token.create", "token.create", "token.create", "audit.prune"}, left)
	var detail map[string]any
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT detail FROM audit_events WHERE tenant_id = $1 AND action = 'audit.prune'`,
		a.TenantID).Scan(&detail))
	assert.Equal(t, 23.0, detail["pruned"])
	assert.Equal(t, 23.0, detail["through_seq"])
	assert.Len(t, e.logs.records(t, "audit events pruned"), 2, "one per pruned chain")

	// New rows chain on after the pruned ones, and a second pass prunes nothing new.
	e.tokenize(t, a, 2)
	n, err = e.svc.PruneAudit(ctx, vault.DefaultAuditRetention)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.True(t, e.verify(t, nil).OK)

	// Moving the checkpoint forward to hide the oldest rows is detected.
	e.exec(t, `UPDATE audit_lanes h SET pruned_seq = 24, pruned_hash = a.row_hash
		FROM audit_events a WHERE a.tenant_id = h.chain_id AND a.chain_lane = h.lane AND a.chain_seq = 24
		AND h.chain_id = $1 AND h.lane = 0`, a.TenantID)
	e.exec(t, `DELETE FROM audit_events WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 24`, a.TenantID)
	r = e.verify(t, &a.TenantID)
	require.Len(t, r.Breaks, 1)
	assert.Equal(t, vault.AuditCheckpointMismatch, r.Breaks[0].Reason, r.Breaks[0].Message)

	_, err = e.svc.PruneAudit(ctx, time.Hour)
	assert.Equal(t, vault.KindInvalid, vault.ErrorKind(err), "a retention under a day is refused")
}

func TestAuditPruningStopsAtATamperedRow(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	e.tokenize(t, a, 10) // seq 1–13 at day 0
	bad := e.rowAt(t, a.TenantID, 8)
	e.tamper(t, `UPDATE audit_events SET detail = '{"edited":true}' WHERE id = $1`, bad)
	e.clock.Advance(401 * 24 * time.Hour)

	n, err := e.svc.PruneAudit(ctx, vault.DefaultAuditRetention)
	require.NoError(t, err, "the good rows before the edit are pruned")
	assert.Equal(t, int64(7), n)
	_, err = e.svc.PruneAudit(ctx, vault.DefaultAuditRetention)
	assert.ErrorContains(t, err, "broken at seq 8", "pruning never erases the evidence")

	r := e.verify(t, &a.TenantID)
	require.Len(t, r.Breaks, 1)
	assert.Equal(t, vault.AuditChanged, r.Breaks[0].Reason)
	assert.Equal(t, bad, r.Breaks[0].ID)
}

// TestAuditPruningPassesLanesWithNothingDue: a prune pass over lanes whose
// oldest row is within the retention neither locks them nor waits for the
// writers holding them (it used to lock each lane and read a batch of its
// rows to find nothing), and once rows are due it prunes them.
func TestAuditPruningPassesLanesWithNothingDue(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	e.tokenize(t, a, 5)

	held, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = held.Rollback(ctx) }()
	_, err = held.Exec(ctx, `SELECT 1 FROM audit_lanes FOR UPDATE`) // every lane, as busy writers hold them
	require.NoError(t, err)
	pass, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := e.svc.PruneAudit(pass, vault.DefaultAuditRetention)
	require.NoError(t, err, "nothing is due: no lane is waited for")
	assert.Zero(t, n)
	require.NoError(t, held.Rollback(ctx))

	e.clock.Advance(401 * 24 * time.Hour)
	n, err = e.svc.PruneAudit(ctx, vault.DefaultAuditRetention)
	require.NoError(t, err)
	assert.Positive(t, n, "rows past the retention are pruned")
	assert.True(t, e.verify(t, nil).OK)
}

func TestAuditInsertFailureFailsTheAction(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	tok, _, err := e.svc.Tokenize(ctx, a, vault.TokenizeInput{BusinessKey: "pm_kept", Card: cardNo(1).Card})
	require.NoError(t, err)

	// From here on, every audit insert of this tenant fails.
	e.exec(t, `CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN RAISE EXCEPTION 'audit insert refused by test'; END $$`)
	e.exec(t, fmt.Sprintf(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW
		WHEN (NEW.tenant_id = '%s') EXECUTE FUNCTION refuse_audit()`, a.TenantID))

	tests := []struct {
		name string
		call func() error
	}{
		{"tokenize", func() error {
			_, _, err := e.svc.Tokenize(ctx, a, vault.TokenizeInput{BusinessKey: "pm_new", Card: cardNo(2).Card})
			return err
		}},
		{"tokenize update", func() error {
			in := vault.TokenizeInput{BusinessKey: "pm_kept", Card: cardNo(1).Card}
			in.Card.ExpYear = "2035"
			_, _, err := e.svc.Tokenize(ctx, a, in)
			return err
		}},
		{"read", func() error { _, err := e.svc.GetToken(ctx, a, tok.ID); return err }},
		{"list", func() error {
			_, err := e.svc.ListTokens(ctx, a, vault.ListTokensParams{Limit: 10})
			return err
		}},
		{"detokenize", func() error { _, err := e.svc.Detokenize(ctx, a, tok.ID, "charge"); return err }},
		{"delete", func() error { return e.svc.DeleteToken(ctx, a, tok.ID) }},
		{"list audit events", func() error { _, err := e.svc.ListAuditEvents(ctx, a, 10, 0); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			assert.Equal(t, vault.KindInternal, vault.ErrorKind(err), "%v", err)
		})
	}

	var tokens int
	var expYear int
	var cvcKept bool
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*), max(exp_year), bool_and(cvc_ct IS NOT NULL) FROM tokens
		WHERE tenant_id = $1`, a.TenantID).Scan(&tokens, &expYear, &cvcKept))
	assert.Equal(t, 1, tokens, "no token was created and none deleted")
	assert.Equal(t, 2033, expYear, "the update was not applied")
	assert.True(t, cvcKept, "the failed reveal did not consume the CVC")

	e.exec(t, `DROP TRIGGER refuse_audit ON audit_events`)
	r, err := e.svc.Detokenize(ctx, a, tok.ID, "")
	require.NoError(t, err)
	assert.Equal(t, "123", r.Card.CVC.Reveal(), "the CVC is still there for the first successful reveal")
}

// BenchmarkAuditChain measures what the written-once chain costs:
// tokenization at the bench's parallelism (32 goroutines), and the
// verifier's throughput per row. Run: go test ./vault/postgres -run '^$' -bench AuditChain.
func BenchmarkAuditChain(b *testing.B) {
	e := newAuditEnv(b)
	a := e.actor(b)
	var n atomic.Int64
	b.Run("tokenize", func(b *testing.B) {
		b.SetParallelism(16) // × GOMAXPROCS 2 = 32 goroutines
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := e.svc.Tokenize(context.Background(), a, cardNo(int(n.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("verify-per-row", func(b *testing.B) {
		r, err := e.svc.VerifyAudit(context.Background(), &a.TenantID)
		require.NoError(b, err)
		require.True(b, r.OK)
		b.ReportMetric(float64(r.Rows), "rows")
		b.ResetTimer()
		for range b.N {
			if _, err := e.svc.VerifyAudit(context.Background(), &a.TenantID); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*r.Rows), "ns/row")
	})
}
