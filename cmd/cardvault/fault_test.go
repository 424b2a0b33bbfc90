//go:build linux

package main

// Fault tests: the real binary (or the real serve()) against a real
// PostgreSQL, under tokenization load, through process, database and KEK
// faults. Each proves one guarantee; README "Operating" names them. The
// child process and the load come from cmd/cardvault/internal/e2e.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/pglocal"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// faultBody is the tokenize body of card e2e.CardNumber(i), with its own
// business key.
func faultBody(i int64) []byte {
	return e2e.ForwardBody("fault-"+strconv.FormatInt(i, 10), e2e.CardNumber(int(i)))
}

// faultAnswer is the outcome of one request of a load.
type faultAnswer struct {
	e2e.Answer           // zero when err is set
	at         time.Time // when it was sent
	latency    time.Duration
	err        error  // a transport error: no answer at all
	tokenID    string // on a 2xx
	card       int64
}

// tokenLoad is POST /tokens sent by several workers until stop, with every
// answer kept.
type tokenLoad struct {
	client *e2e.Client
	load   *e2e.Load

	mu      sync.Mutex
	answers []faultAnswer
}

// startTokenLoad starts workers sending tokenize requests to url, each card
// a new number and business key, from index first+1 on.
func startTokenLoad(t *testing.T, url, key string, workers int, first int64) *tokenLoad {
	t.Helper()
	l := &tokenLoad{client: e2e.NewClient(url, key, workers, 10*time.Second)}
	l.load = e2e.StartLoad(context.Background(), e2e.LoadOptions{Workers: workers}, func(ctx context.Context, _, i int) error {
		l.record(l.tokenize(ctx, first+1+int64(i)))
		return nil // the answers are judged by the test, not counted by the load
	})
	t.Cleanup(l.stop)
	return l
}

// tokenize sends card i once and returns what came back.
func (l *tokenLoad) tokenize(ctx context.Context, i int64) faultAnswer {
	a := faultAnswer{at: time.Now(), card: i}
	a.Answer, a.err = l.client.Send(ctx, http.MethodPost, "/tokens", faultBody(i))
	a.latency = time.Since(a.at)
	if a.OK() {
		a.tokenID, _ = e2e.TokenID(a.Body)
	}
	return a
}

func (l *tokenLoad) record(a faultAnswer) {
	if errors.Is(a.err, context.Canceled) {
		return // stopped by the test, not by the vault
	}
	l.mu.Lock()
	l.answers = append(l.answers, a)
	l.mu.Unlock()
}

// stop ends the load and waits for every worker.
func (l *tokenLoad) stop() {
	l.load.Stop()
	l.client.Close()
}

// snapshot returns the answers so far.
func (l *tokenLoad) snapshot() []faultAnswer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]faultAnswer(nil), l.answers...)
}

// count returns how many answers sent at or after since satisfy keep.
func (l *tokenLoad) count(since time.Time, keep func(faultAnswer) bool) int {
	n := 0
	for _, a := range l.snapshot() {
		if !a.at.Before(since) && keep(a) {
			n++
		}
	}
	return n
}

// acked returns every acknowledged tokenization: token id → card number.
func (l *tokenLoad) acked() map[string]string {
	out := map[string]string{}
	for _, a := range l.snapshot() {
		if a.OK() {
			out[a.tokenID] = e2e.CardNumber(int(a.card))
		}
	}
	return out
}

// detokenizeAll reveals every token of the tenant found in the database
// and checks that each acknowledged token is among them with its card.
// Every row must open: a half-written row would not.
func detokenizeAll(t *testing.T, url, key string, pool *pgxpool.Pool, tenantID string, acked map[string]string) {
	t.Helper()
	ids := tokenIDs(t, pool, tenantID)
	client := e2e.NewClient(url, key, 1, 10*time.Second)
	defer client.Close()
	revealed := make(map[string]string, len(ids))
	for _, id := range ids {
		b, err := client.Call(context.Background(), http.MethodPost, "/tokens/"+id+"/detokenize", []byte(`{"reason":"fault test"}`), http.StatusOK)
		require.NoError(t, err, "token %s does not detokenize", id)
		var r struct {
			Card struct {
				Number string `json:"number"`
			} `json:"card"`
		}
		require.NoError(t, json.Unmarshal(b, &r))
		revealed[id] = r.Card.Number
	}
	for id, number := range acked {
		got, ok := revealed[id]
		if !assert.True(t, ok, "acknowledged token %s is missing", id) {
			continue
		}
		assert.True(t, got == number, "acknowledged token %s holds another card", id) // never print card numbers
	}
}

// tokenIDs returns the ids of the tenant's token rows.
func tokenIDs(t *testing.T, pool *pgxpool.Pool, tenantID string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text FROM tokens WHERE tenant_id = $1`, tenantID)
	require.NoError(t, err)
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// assertNoHalfWrittenTokens checks that a token row and its token.create
// audit event exist together or not at all (one transaction).
func assertNoHalfWrittenTokens(t *testing.T, pool *pgxpool.Pool, tenantID string) {
	t.Helper()
	var tokensWithoutEvent, eventsWithoutToken int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM tokens t WHERE t.tenant_id = $1
		AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.token_id = t.id AND a.action = 'token.create')`, tenantID).Scan(&tokensWithoutEvent))
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events a WHERE a.tenant_id = $1
		AND a.action = 'token.create' AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = a.token_id)`, tenantID).Scan(&eventsWithoutToken))
	assert.Zero(t, tokensWithoutEvent, "token rows without their create event")
	assert.Zero(t, eventsWithoutToken, "create events without their token row")
}

// faultTenant creates a tenant with an every-scope key through a service on
// db with kek, and returns its id and key.
func faultTenant(t *testing.T, db string, kek tink.AEAD) (string, string) {
	t.Helper()
	svc := vaulttest.NewService(t, db, vaulttest.Options{KEK: kek})
	id, key := vaulttest.Tenant(t, svc)
	return id.String(), key
}

// ---- the binary as a child process ----

// buildVault builds cardvault into the test's temp dir and returns its path.
func buildVault(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cardvault")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// logTail is how much of a child vault's log a failure message quotes.
const logTail = 4 << 10

// startChildVault runs bin serve with env (the database and the KEK) and
// returns once it is ready. The child is killed when the test ends, and by
// the kernel if the test process dies.
func startChildVault(t *testing.T, bin string, env ...string) *e2e.Vault {
	t.Helper()
	v, err := e2e.StartVault(context.Background(), e2e.VaultOptions{Command: exec.Command(bin, "serve"), Env: env,
		LogPath: filepath.Join(t.TempDir(), "vault.log"), StopGrace: shutdownGrace})
	if v != nil {
		t.Cleanup(v.Kill)
	}
	require.NoError(t, err)
	return v
}

// waitExit waits up to within for the child to exit and returns its exit
// code.
func waitExit(t *testing.T, v *e2e.Vault, within time.Duration) int {
	t.Helper()
	code, err := v.Wait(within)
	require.NoError(t, err, "log: %s", v.LogTail(logTail))
	return code
}

// childSetup is a migrated database of its own, a local KEK, a tenant with
// an every-scope key, the built binary and the environment that runs it.
type childSetup struct {
	bin, db, tenantID, key string
	env                    []string
	pool                   *pgxpool.Pool
}

func newChildSetup(t *testing.T, bin string) childSetup {
	t.Helper()
	kek, kekURI := vaulttest.KEK(t)
	s := childSetup{bin: bin, db: migratedDatabase(t)}
	s.tenantID, s.key = faultTenant(t, s.db, kek)
	s.env = []string{"VAULT_DATABASE_URL=" + s.db, "VAULT_KEK_URI=" + kekURI}
	s.pool = vaulttest.Pool(t, s.db)
	return s
}

// waitAcked waits until n requests sent at or after since have been
// acknowledged.
func waitAcked(t *testing.T, l *tokenLoad, since time.Time, n int, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("%d acknowledged tokens", n), func() bool {
		return l.count(since, faultAnswer.OK) >= n
	})
}

// TestTheBinaryUnderLoad builds cardvault once and runs it as a child
// process through SIGKILL and SIGTERM under tokenization load.
func TestTheBinaryUnderLoad(t *testing.T) {
	bin := buildVault(t)
	tests := []struct {
		name string
		run  func(t *testing.T, s childSetup)
	}{
		{"SIGKILL loses no acknowledged token", sigkillUnderLoad},
		{"SIGTERM finishes in-flight requests and exits 0", sigtermUnderLoad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newChildSetup(t, bin)) })
	}
}

// sigkillUnderLoad kills the vault with SIGKILL while 8 workers tokenize,
// restarts it, and checks that every acknowledged token is there and opens,
// and that no token row lacks its audit event or the other way round.
func sigkillUnderLoad(t *testing.T, s childSetup) {
	child := startChildVault(t, s.bin, s.env...)
	load := startTokenLoad(t, child.URL(), s.key, 8, 0)
	waitAcked(t, load, time.Time{}, 200, 15*time.Second)

	require.NoError(t, child.Signal(syscall.SIGKILL))
	waitExit(t, child, 10*time.Second)
	load.stop()
	acked := load.acked()
	cut := load.count(time.Time{}, func(a faultAnswer) bool { return a.err != nil })
	t.Logf("%d tokens acknowledged before SIGKILL; %d requests got no answer (in flight at the kill or sent after it)", len(acked), cut)

	restarted := startChildVault(t, s.bin, s.env...)
	assertNoHalfWrittenTokens(t, s.pool, s.tenantID)
	detokenizeAll(t, restarted.URL(), s.key, s.pool, s.tenantID, acked)
	for _, a := range load.snapshot() {
		if a.err == nil {
			assert.True(t, a.OK(), "before the kill every answer is a 2xx, got %d %s", a.Status, a.Body)
		}
	}
}

// holdRequest opens a connection, sends a tokenize request's headers with
// Expect: 100-continue and waits for the 100 Continue that the server sends
// when the handler starts reading the body: the request is then in flight.
// send completes it and returns the answer.
func holdRequest(t *testing.T, addr, key string, card int64) (send func() (*http.Response, error)) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	body := faultBody(card)
	_, err = fmt.Fprintf(conn, "POST /tokens HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-API-Key: %s\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, key, len(body))
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "100 Continue")
	_, err = br.ReadString('\n')
	require.NoError(t, err)
	return func() (*http.Response, error) {
		if _, err := conn.Write(body); err != nil {
			return nil, err
		}
		return http.ReadResponse(br, nil)
	}
}

// waitRefused polls until a new connection to addr is refused.
func waitRefused(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	waitFor(t, within, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
}

// sigtermUnderLoad sends SIGTERM while 4 workers tokenize and one request
// is held in flight (its handler waiting for the body): new connections are
// refused at once, the held request still completes with 201, every answer
// is a 2xx, the exit code is 0 within the grace period, and every
// acknowledged token is there after a restart.
func sigtermUnderLoad(t *testing.T, s childSetup) {
	child := startChildVault(t, s.bin, s.env...)
	load := startTokenLoad(t, child.URL(), s.key, 4, 0)
	waitAcked(t, load, time.Time{}, 100, 15*time.Second)
	const heldCard = 900_000_000 // far from the load's cards
	complete := holdRequest(t, child.Addr(), s.key, heldCard)

	require.NoError(t, child.Signal(syscall.SIGTERM))
	termAt := time.Now()
	waitRefused(t, child.Addr(), 5*time.Second)
	res, err := complete()
	require.NoError(t, err, "the request in flight at SIGTERM is answered")
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.StatusCode, "body: %s", b)
	heldID, err := e2e.TokenID(b)
	require.NoError(t, err)
	code := waitExit(t, child, shutdownGrace)
	exitAfter := time.Since(termAt)
	assert.Equal(t, 0, code, "exit code after SIGTERM; log: %s", child.LogTail(logTail))
	assert.Less(t, exitAfter, shutdownGrace)
	load.stop()

	acked := load.acked()
	acked[heldID] = e2e.CardNumber(heldCard)
	for _, a := range load.snapshot() {
		if a.err == nil {
			assert.True(t, a.OK(), "every answer, in flight at SIGTERM or not, is a 2xx: got %d %s", a.Status, a.Body)
		}
	}
	t.Logf("exit 0 %s after SIGTERM; %d tokens acknowledged", exitAfter.Round(time.Millisecond), len(acked))
	restarted := startChildVault(t, s.bin, s.env...)
	assertNoHalfWrittenTokens(t, s.pool, s.tenantID)
	detokenizeAll(t, restarted.URL(), s.key, s.pool, s.tenantID, acked)
}

// ---- PostgreSQL restarts, with serve() in this process ----

// privatePostgres is a PostgreSQL server of this test alone, so restarting
// it disturbs no other package's database.
type privatePostgres struct {
	dir string
	srv *pglocal.Server
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	p := &privatePostgres{dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := pglocal.Start(ctx, p.dir, pglocal.Options{})
	if errors.Is(err, pglocal.ErrNoBinaries) {
		t.Skip("no PostgreSQL server binaries to run a private server: apt-get install postgresql")
	}
	require.NoError(t, err)
	p.srv = srv
	t.Cleanup(func() {
		_ = p.srv.Stop()
		os.RemoveAll(p.srv.Dir) // a relocated directory (root); t.TempDir removes p.dir
	})
	return p
}

// restart starts the server again on the same files and port.
func (p *privatePostgres) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := pglocal.Start(ctx, p.dir, pglocal.Options{Port: p.srv.Port})
	require.NoError(t, err)
	p.srv = srv
}

// immediateShutdown stops the server the way a crash does: SIGQUIT to the
// postmaster (no checkpoint; the next start replays the WAL).
func (p *privatePostgres) immediateShutdown(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.srv.DataDir, "postmaster.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGQUIT))
	_ = p.srv.Stop() // waits for the exit; reports the unclean exit
}

// faultServeConfig is serve's configuration for the fault tests; its zero
// Limits mean no rate limit (one key drives all the load) and no cap.
func faultServeConfig(db, kekURI string) config {
	return config{DatabaseURL: db, KEKURI: kekURI, CVCTTL: time.Hour, Cryptoperiod: 365 * 24 * time.Hour,
		KeyRefresh: time.Second, KeyCacheTTL: time.Hour}
}

func TestPostgresRestartDuringTokenizationFailsFastAndRecovers(t *testing.T) {
	pg := startPrivatePostgres(t)
	ctx := context.Background()
	db := pg.srv.URL("cardvault")
	require.NoError(t, ensureDatabase(ctx, pg.srv.URL("postgres"), "cardvault"))
	require.NoError(t, migrate(ctx, db))
	kek, kekURI := vaulttest.KEK(t)
	tenantID, key := faultTenant(t, db, kek)
	cfg := faultServeConfig(db, kekURI)
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler)) // the real pool and service of `serve`
	require.NoError(t, err)
	t.Cleanup(a.Close)
	sv := startServe(t, a.svc, cfg)
	load := startTokenLoad(t, sv.url, key, 8, 0)

	restarts := []struct {
		name string
		stop func(t *testing.T)
	}{
		{"fast shutdown", func(t *testing.T) { require.NoError(t, pg.srv.Stop()) }},
		{"crash (immediate shutdown, WAL replay)", pg.immediateShutdown},
	}
	for _, r := range restarts {
		t.Run(r.name, func(t *testing.T) {
			waitAcked(t, load, time.Now(), 50, 15*time.Second)
			down := time.Now()
			r.stop(t)
			waitFor(t, 10*time.Second, "503s while PostgreSQL is down", func() bool {
				return load.count(down, func(a faultAnswer) bool { return a.Status == http.StatusServiceUnavailable }) >= 10
			})
			pg.restart(t)
			outage := time.Since(down)
			up := time.Now()
			waitAcked(t, load, up, 50, 15*time.Second)
			t.Logf("outage %s; recovered %s after the restart", outage.Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
		})
	}
	load.stop()

	var failed int
	var slowest time.Duration
	for _, a := range load.snapshot() {
		require.NoError(t, a.err, "the vault itself never stops answering")
		if a.OK() {
			continue
		}
		failed++
		slowest = max(slowest, a.latency)
		typ, code := a.APIError()
		assert.Equal(t, http.StatusServiceUnavailable, a.Status, "an outage answers 503, not %d (%s)", a.Status, code)
		assert.Equal(t, "api_error", typ)
		assert.NotEmpty(t, a.Header.Get("Retry-After"), "a 503 says when to retry")
		assert.Less(t, a.latency, 3*time.Second, "a request during the outage fails fast")
	}
	acked := load.acked()
	t.Logf("%d tokens acknowledged, %d requests answered 503 (slowest %s)", len(acked), failed, slowest.Round(time.Millisecond))
	pool := vaulttest.Pool(t, db)
	assertNoHalfWrittenTokens(t, pool, tenantID)
	detokenizeAll(t, sv.url, key, pool, tenantID, acked)
}

// ---- the root KEK ----

// send sends one request through c and returns the answer.
func send(t *testing.T, c *e2e.Client, method, path string, body []byte) e2e.Answer {
	t.Helper()
	a, err := c.Send(context.Background(), method, path, body)
	require.NoError(t, err)
	return a
}

func TestKEKUnavailableLaterServesCachedKeysUntilTheirTTLThen503(t *testing.T) {
	db := migratedDatabase(t)
	kek := vaulttest.NewSwitchableKEK(t)
	clock := vaulttest.NewClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	svc, err := postgres.NewService(postgres.Config{Pool: vaulttest.Pool(t, db), KEK: kek, Now: clock.Now,
		KeyCacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, key := vaulttest.Tenant(t, svc)
	cfg := faultServeConfig(db, "local:///unused/kek.json")
	cfg.Limits.Now = clock.Now // /readyz's one-second cache runs on the test clock
	sv := startServe(t, svc, cfg)
	client := e2e.NewClient(sv.url, key, 1, 10*time.Second)
	defer client.Close()
	created := send(t, client, http.MethodPost, "/tokens", faultBody(0))
	require.Equal(t, http.StatusCreated, created.Status, "%s", created.Body)
	firstID, err := e2e.TokenID(created.Body)
	require.NoError(t, err)
	pool := vaulttest.Pool(t, db)

	steps := []struct {
		name       string
		advance    time.Duration
		kekDown    bool
		wantStatus int // of tokenize, read, detokenize and /readyz; 0: each one's success
	}{
		{"KEK down, keys cached: serving", 30 * time.Minute, true, 0},
		{"KEK down past the cache TTL: 503 kek_unavailable", 31 * time.Minute, true, http.StatusServiceUnavailable},
		{"KEK back: serving again", time.Second, false, 0},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Advance(st.advance)
			kek.Down.Store(st.kekDown)
			card := int64(i + 1)
			var rows int
			require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM tokens`).Scan(&rows))
			requests := []struct {
				method, path string
				body         []byte
				ok           int
			}{
				{http.MethodPost, "/tokens", faultBody(card), http.StatusCreated},
				{http.MethodGet, "/tokens/" + firstID, nil, http.StatusOK},
				{http.MethodPost, "/tokens/" + firstID + "/detokenize", []byte("{}"), http.StatusOK},
				{http.MethodGet, "/readyz", nil, http.StatusOK},
			}
			for _, r := range requests {
				a := send(t, client, r.method, r.path, r.body)
				if st.wantStatus == 0 {
					assert.Equal(t, r.ok, a.Status, "%s %s: %s", r.method, r.path, a.Body)
					continue
				}
				assert.Equal(t, st.wantStatus, a.Status, "%s %s: %s", r.method, r.path, a.Body)
				if _, code := a.APIError(); r.path != "/readyz" {
					assert.Equal(t, "kek_unavailable", code, "%s %s", r.method, r.path)
				}
				assert.NotEmpty(t, a.Header.Get("Retry-After"))
				assert.False(t, bytes.Contains(a.Body, []byte(e2e.CardNumber(int(card)))), "no card number in an error answer")
			}
			if st.wantStatus != 0 {
				var after, plain int
				require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM tokens`).Scan(&after))
				assert.Equal(t, rows, after, "nothing is stored without the keys: no plaintext fallback")
				require.NoError(t, pool.QueryRow(context.Background(),
					`SELECT count(*) FROM tokens WHERE position(convert_to($1, 'UTF8') IN pan_ct) > 0`, e2e.CardNumber(int(card))).Scan(&plain))
				assert.Zero(t, plain)
			}
		})
	}
}

func TestServeRefusesToStartWithoutItsRootKEK(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "test-token") // the HashiCorp Vault KEK needs one; the server is unreachable anyway
	closed, err := e2e.FreePort()         // nothing listens there
	require.NoError(t, err)
	unreachable := "hcvault://127.0.0.1:" + strconv.Itoa(closed) + "/transit/keys/cardvault"
	withTenant := migratedDatabase(t)
	_, localKEK := vaulttest.KEK(t)
	_, _, err = run(t, "tenant", "create", "kek-check", "--database-url", withTenant, "--kek-uri", localKEK)
	require.NoError(t, err)
	tests := []struct {
		name, db, kek string
		want          []string
	}{
		{"KMS unreachable, no tenant yet", migratedDatabase(t), unreachable,
			[]string{"root KEK hcvault://127.0.0.1:", "unreachable KEK", "kek_unavailable"}},
		{"KMS unreachable, tenants to open", withTenant, unreachable,
			[]string{"root KEK hcvault://127.0.0.1:", "cannot open the tenant keysets", "kek_unavailable"}},
		{"local KEK file missing", withTenant, "local:///nonexistent/kek.json",
			[]string{"root KEK local:///nonexistent/kek.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := run(t, "serve", "--database-url", tt.db, "--kek-uri", tt.kek, "--listen", "127.0.0.1:0")
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

func TestKeyCacheTTLIsValidatedUpFront(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	tests := []struct {
		name, value string
	}{
		{"not a duration", "forever"},
		{"zero", "0s"},
		{"under a second", "500ms"},
		{"over a day", "25h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, "serve", "--database-url", dbURL, "--kek-uri", kek, "--listen", "127.0.0.1:0", "--key-cache-ttl", tt.value)
			assert.ErrorContains(t, err, "VAULT_KEY_CACHE_TTL")
		})
	}
}
