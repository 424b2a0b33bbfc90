package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/pglocal"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// markWriter collects output and closes seen once it contains mark.
type markWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	mark string
	seen chan struct{}
	once sync.Once
}

func newMarkWriter(mark string) *markWriter {
	return &markWriter{mark: mark, seen: make(chan struct{})}
}

func (w *markWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.mark) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *markWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// devRun is a `cardvault dev` the test started.
type devRun struct {
	out    *markWriter
	cancel context.CancelFunc
	done   chan error
}

// startDev runs `cardvault dev args…` until it has printed the operator
// setup (the vault is then listening), failing t if it exits first.
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRun{out: newMarkWriter("cardvault keys status --tenant $TENANT"), cancel: cancel, done: make(chan error, 1)}
	root := newRootCmd()
	root.SetArgs(append([]string{"dev", "--listen", "127.0.0.1:0"}, args...))
	root.SetOut(d.out)
	root.SetErr(&bytes.Buffer{})
	go func() { d.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() { _ = d.stop() })
	select {
	case <-d.out.seen:
		return d
	case err := <-d.done:
		d.done <- err
		t.Fatalf("dev exited before serving: %v\n%s", err, d.out.String())
	case <-time.After(time.Minute):
		t.Fatalf("dev did not start within a minute:\n%s", d.out.String())
	}
	return nil
}

// stop ends the run (Ctrl-C) and returns its error.
func (d *devRun) stop() error {
	d.cancel()
	err := <-d.done
	d.done <- err
	return err
}

// printed returns the first submatch of re in the run's output.
func (d *devRun) printed(t *testing.T, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(d.out.String())
	require.NotNil(t, m, "%s in\n%s", re, d.out.String())
	return m[1]
}

// liveDevKeys counts the unrevoked API keys of the tenant named dev.
func liveDevKeys(t *testing.T, url string) int {
	t.Helper()
	var n int
	require.NoError(t, vaulttest.Pool(t, url).QueryRow(context.Background(), `SELECT count(*) FROM api_keys k
		JOIN tenants t ON t.id = k.tenant_id WHERE t.name = 'dev' AND k.revoked_at IS NULL`).Scan(&n))
	return n
}

// TestDevKeepsOneKeyAcrossRestarts: however often dev restarts, tenant dev
// has one live all-scope key, and it is the one printed the first time.
func TestDevKeepsOneKeyAcrossRestarts(t *testing.T) {
	t.Setenv("VAULT_KEK_URI", "")
	_, kek := vaulttest.KEK(t)
	url, dir := migratedDatabase(t), t.TempDir()
	args := []string{"--dir", dir, "--database-url", url, "--kek-uri", kek}
	const keyRe = `every scope; the same after a restart\): (cvk_\S+)`

	first := startDev(t, args...)
	key := first.printed(t, keyRe)
	require.NoError(t, first.stop())
	second := startDev(t, args...)
	assert.Equal(t, key, second.printed(t, keyRe), "the same key after a restart")
	assert.Equal(t, 1, liveDevKeys(t, url), "one live key after two starts")
	base := second.printed(t, `running at (http://\S+)`)
	assert.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)
	req, err := http.NewRequest(http.MethodGet, base+"/tokens", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "the kept key works")
	require.NoError(t, second.stop())

	require.NoError(t, os.Remove(filepath.Join(dir, devKeyFile)))
	third := startDev(t, args...)
	assert.NotEqual(t, key, third.printed(t, keyRe), "a lost key file gives a fresh key")
	assert.Equal(t, 1, liveDevKeys(t, url), "and the old key is revoked")
}

// TestDevRestartsOnTheRotatedKEK follows the README: rotate the dev
// vault's root KEK, restart dev once with VAULT_KEK_URI, and later restarts
// keep using the new KEK.
func TestDevRestartsOnTheRotatedKEK(t *testing.T) {
	t.Setenv("VAULT_KEK_URI", "")
	url, dir := migratedDatabase(t), t.TempDir()
	args := []string{"--dir", dir, "--database-url", url}
	d := startDev(t, args...)
	oldURI := d.printed(t, `VAULT_KEK_URI='([^']+)'`)
	require.Equal(t, "local://"+filepath.Join(dir, "kek.json"), oldURI)
	require.NoError(t, d.stop())

	out, _, err := run(t, "kek", "create", "--out", filepath.Join(dir, "kek-2.json"))
	require.NoError(t, err)
	newURI := strings.TrimSpace(out)
	out, _, err = run(t, "keys", "rotate-root", "--new-kek-uri", newURI, "--database-url", url, "--kek-uri", oldURI)
	require.NoError(t, err)
	assert.Contains(t, out, "`VAULT_KEK_URI="+newURI+" make dev`", "rotate-root says how to restart dev")

	t.Setenv("VAULT_KEK_URI", newURI)
	d = startDev(t, args...)
	assert.Equal(t, newURI, d.printed(t, `VAULT_KEK_URI='([^']+)'`))
	require.NoError(t, d.stop())
	t.Setenv("VAULT_KEK_URI", "")
	d = startDev(t, args...)
	assert.Equal(t, newURI, d.printed(t, `VAULT_KEK_URI='([^']+)'`), "a plain restart stays on the new KEK")
	assert.Contains(t, d.out.String(), "which the last run used")
}

// reachableDir returns a t.TempDir the PostgreSQL server user can reach
// when the test runs as root (t.TempDir's parent is mode 0700).
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	return dir
}

// TestDevPostgresKeepsItsPort: the private server comes back on the port
// it had, so the printed VAULT_DATABASE_URL stays valid; only a taken port
// moves it, and dev says so.
func TestDevPostgresKeepsItsPort(t *testing.T) {
	if _, err := pglocal.FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL server binaries: %v", err)
	}
	ctx := context.Background()
	dir := reachableDir(t)
	start := func() (*pglocal.Server, string) {
		t.Helper()
		var out bytes.Buffer
		srv, err := startDevPostgres(ctx, dir, &out)
		require.NoError(t, err)
		t.Cleanup(func() { _ = srv.Stop() })
		return srv, out.String()
	}
	srv, _ := start()
	port := srv.Port
	require.NoError(t, srv.Stop())
	srv, said := start()
	assert.Equal(t, port, srv.Port, "the same port after a restart")
	assert.Empty(t, said)
	conn, err := pgx.Connect(ctx, srv.URL(devDatabase))
	require.NoError(t, err, "the dev database is there")
	require.NoError(t, conn.Close(ctx))
	require.NoError(t, srv.Stop())

	taken, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	require.NoError(t, err)
	defer taken.Close()
	srv, said = start()
	assert.NotEqual(t, port, srv.Port)
	assert.Contains(t, said, "port "+strconv.Itoa(port)+" of the private PostgreSQL is taken")
	assert.Equal(t, srv.Port, readDevPort(dir), "the new port is remembered")
}

// TestDevPrintsCommandsThatRunAsPrinted: when `cardvault` on the PATH is
// not this binary, the operator setup defines it.
func TestDevPrintsCommandsThatRunAsPrinted(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	t.Setenv("PATH", t.TempDir())
	assert.Equal(t, "alias cardvault="+shellQuote(self)+"   # `make install` puts cardvault on your PATH instead", cliAlias())

	bin := t.TempDir()
	require.NoError(t, os.Symlink(self, filepath.Join(bin, "cardvault")))
	t.Setenv("PATH", bin)
	assert.Empty(t, cliAlias(), "cardvault on the PATH is this binary")

	var out bytes.Buffer
	printOperatorSetup(&out, config{DatabaseURL: "postgres://postgres@127.0.0.1:5/cardvault", KEKURI: "local:///it's/kek.json", Operator: "alice@laptop"},
		[16]byte{1}, "alias cardvault='/x/bin/cardvault'")
	assert.Equal(t, "Operator commands (keys, tenant, apikey, import) in another shell: paste\n\n"+
		"export VAULT_DATABASE_URL='postgres://postgres@127.0.0.1:5/cardvault' VAULT_KEK_URI='local:///it'\\''s/kek.json' VAULT_OPERATOR='alice@laptop' TENANT=01000000-0000-0000-0000-000000000000\n"+
		"alias cardvault='/x/bin/cardvault'\n"+
		"cardvault keys status --tenant $TENANT\n\n", out.String())
}

// TestDevStartsItsOwnPostgresWhenItsURLIsExported: the export line dev
// prints, pasted into the shell that restarts dev, names dev's own server,
// which dev must then start rather than connect to.
func TestDevStartsItsOwnPostgresWhenItsURLIsExported(t *testing.T) {
	dir := t.TempDir()
	own := "postgres://postgres@127.0.0.1:54321/cardvault?sslmode=disable"
	assert.False(t, isOwnPostgres(dir, own), "no port remembered yet")
	require.NoError(t, writeDevFile(dir, devPortFile, "54321"))
	tests := []struct {
		url  string
		want bool
	}{
		{own, true},
		{"postgres://postgres@127.0.0.1:54321/cardvault", true},
		{"postgres://postgres@127.0.0.1:54322/cardvault?sslmode=disable", false},
		{"postgres://postgres@127.0.0.1:54321/other?sslmode=disable", false},
		{"postgres://vault@db.internal:5432/cardvault", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, isOwnPostgres(dir, tt.url), tt.url)
	}
}
