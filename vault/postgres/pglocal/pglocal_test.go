package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requireBinaries skips the test when no PostgreSQL server binaries exist.
func requireBinaries(t *testing.T) {
	t.Helper()
	if _, err := FindBinDir(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// startServer starts a NoSync server on dir, logging to t, and stops it at
// the end of the test; it also removes a relocated directory (root only).
func startServer(t *testing.T, dir string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, dir, Options{NoSync: true, Log: testLog{t}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.Dir != dir {
		t.Logf("relocated: %s", s.Note)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if s.Dir != dir {
			os.RemoveAll(s.Dir)
		}
	})
	return s
}

// reachableTempDir returns a t.TempDir that, as root, the server user can
// reach (t.TempDir's parent is mode 0700), so Start does not relocate it.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testLog sends the server's output to t.Log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func connect(t *testing.T, s *Server) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect %s: %v", s.URL("postgres"), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestStartStopRestartKeepsData uses a plain t.TempDir, so as root it also
// covers relocation to /tmp/cardvault-<hash>.
func TestStartStopRestartKeepsData(t *testing.T) {
	requireBinaries(t)
	dir := t.TempDir()
	ctx := context.Background()

	s := startServer(t, dir)
	conn := connect(t, s)
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}
	if _, err := conn.Exec(ctx, "create table kept (v text); insert into kept values ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid still there after Stop: %v", err)
	}

	// A postmaster.pid naming a live process that is not this server (as
	// after a container restart) must not block the restart.
	stale := fmt.Sprintf("%d\n%s\n", os.Getppid(), s.DataDir)
	if err := os.WriteFile(filepath.Join(s.DataDir, "postmaster.pid"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, dir)
	if s2.DataDir != s.DataDir {
		t.Fatalf("restart used %s, first start %s", s2.DataDir, s.DataDir)
	}
	var v string
	if err := connect(t, s2).QueryRow(ctx, "select v from kept").Scan(&v); err != nil || v != "still here" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
}

func TestLongDirUsesShortSocketDir(t *testing.T) {
	requireBinaries(t)
	dir := filepath.Join(reachableTempDir(t), strings.Repeat("d", 60), strings.Repeat("e", 60))

	s := startServer(t, dir)
	if s.Dir != dir {
		t.Fatalf("Dir = %s, want %s (note: %s)", s.Dir, dir, s.Note)
	}
	if s.SocketDir == s.Dir || len(s.SocketDir) > maxSocketDir {
		t.Fatalf("SocketDir = %s for Dir of %d bytes", s.SocketDir, len(s.Dir))
	}
	if _, err := os.Stat(filepath.Join(s.SocketDir, ".s.PGSQL."+strconv.Itoa(s.Port))); err != nil {
		t.Fatalf("no socket: %v", err)
	}
	connect(t, s)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.SocketDir); !os.IsNotExist(err) {
		t.Fatalf("temporary socket dir %s not removed: %v", s.SocketDir, err)
	}
}

func TestExplicitPortInUse(t *testing.T) {
	requireBinaries(t)
	s := startServer(t, reachableTempDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s2, err := Start(ctx, reachableTempDir(t), Options{NoSync: true, Port: s.Port})
	if err == nil {
		s2.Stop()
		t.Fatal("second server on the same port started")
	}
	if !errors.Is(err, ErrPortTaken) {
		t.Fatalf("error = %v, want ErrPortTaken", err)
	}
}

func TestStopNil(t *testing.T) {
	var s *Server
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestURL(t *testing.T) {
	s := &Server{Port: 5555}
	if got, want := s.URL("app"), "postgres://postgres@127.0.0.1:5555/app?sslmode=disable"; got != want {
		t.Fatalf("URL = %s, want %s", got, want)
	}
}

func TestVersionedBinDirsOrder(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"9.6", "15", true}, {"15", "9.6", false}, {"16", "15", false}, {"10", "9", false}, {"15", "15", false}} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
