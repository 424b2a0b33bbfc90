// Package pglocal runs a private PostgreSQL server from the machine's own
// server binaries (initdb, postgres), for tests and for `cardvault dev`.
//
// The server listens on 127.0.0.1 only, trusts every local connection as the
// superuser "postgres", and lives in its own process group, so a Ctrl-C at
// the terminal reaches the Go program, which then stops the server with
// Stop. On Linux the server also gets SIGINT (fast shutdown) if the Go
// program dies without calling Stop.
//
// When the caller is root, initdb and postgres (which refuse to run as root)
// run as the `postgres` system user, or `nobody` if there is none, and the
// server's directories are given to that user. If that user cannot reach the
// requested directory (say it is under /root, mode 0700), the server's files
// go to /tmp/cardvault-<hash of the directory> instead; see Server.Note.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure Start. The zero value is a durable server on a free port
// that logs nowhere.
type Options struct {
	// Port is the TCP port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// NoSync skips fsync in initdb and runs the server with fsync,
	// synchronous_commit and full_page_writes off: much faster, but a machine
	// crash can corrupt the data. For throwaway test servers.
	NoSync bool
	// Settings are server settings (name=value, e.g. shared_buffers=4GB)
	// passed to postgres with -c, after NoSync's.
	Settings []string
	// Log receives the output of initdb and postgres and pglocal's notes;
	// nil discards them.
	Log io.Writer
	// StartTimeout bounds the wait for the server to accept connections;
	// 0 means 30 seconds.
	StartTimeout time.Duration
}

// Server is a running PostgreSQL server started by Start.
type Server struct {
	// Dir holds DataDir. It is the directory given to Start unless, running
	// as root, Start had to relocate it (see Note).
	Dir string
	// DataDir is the PostgreSQL data directory, Dir/data.
	DataDir string
	// SocketDir holds the server's unix socket (psql -h SocketDir); it is Dir
	// unless Dir's path is too long for a socket address.
	SocketDir string
	// Port is the TCP port the server listens on at 127.0.0.1.
	Port int
	// Note explains, when non-empty, where and why Start deviated from the
	// requested directory. It is also written to Options.Log.
	Note string

	layout  *layout
	log     io.Writer
	tail    *Tail
	proc    *os.Process
	done    chan struct{} // closed when the postgres process has exited
	waitErr error         // the process's exit status, valid once done is closed

	stopOnce sync.Once
	stopErr  error
}

const (
	defaultStartTimeout = 30 * time.Second
	stopTimeout         = 15 * time.Second
	pollInterval        = 50 * time.Millisecond
	startAttempts       = 3 // for a picked port that someone else grabs first
)

// ErrPortTaken is wrapped by the error of Start when the port asked for in
// Options.Port is in use, so a caller can fall back to a free one.
var ErrPortTaken = errors.New("port already in use")

// Start runs a PostgreSQL server whose files live under dir: it runs initdb
// on dir/data unless that already holds a data directory (so restarts keep
// the data), starts postgres and waits until it accepts connections. The
// server keeps running after ctx ends; ctx bounds only the start. It returns
// ErrNoBinaries when the server binaries are missing, and otherwise an error
// that includes the tail of the server's output when initdb or postgres
// fail.
func Start(ctx context.Context, dir string, opts Options) (*Server, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	if acct != nil && !acct.canTraverse(bin) {
		return nil, fmt.Errorf("pglocal: user %s cannot reach the server binaries in %s", acct.name, bin)
	}
	l, err := prepareLayout(dir, acct)
	if err != nil {
		return nil, err
	}
	w := opts.Log
	if w == nil {
		w = io.Discard
	}
	for _, n := range l.notes {
		fmt.Fprintf(w, "pglocal: %s\n", n)
	}
	s, err := start(ctx, bin, l, acct, opts, w)
	if err != nil {
		l.removeTempSocket()
		return nil, err
	}
	return s, nil
}

// start runs initdb if needed and launches postgres, retrying with another
// port when a picked port was taken in the meantime.
func start(ctx context.Context, bin string, l *layout, acct *account, opts Options, w io.Writer) (*Server, error) {
	if opts.Port != 0 { // fail before a slow initdb
		if _, err := choosePort(opts.Port); err != nil {
			return nil, err
		}
	}
	if err := initDataDir(ctx, bin, l.data, acct, opts.NoSync, w); err != nil {
		return nil, err
	}
	if err := clearStalePidFile(l.data, w); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := launch(ctx, bin, l, acct, opts, w)
		if err == nil || opts.Port != 0 || attempt == startAttempts || !errors.Is(err, ErrPortTaken) {
			return s, err
		}
	}
}

// initDataDir runs initdb on data unless it already holds a data directory.
// It returns an error when data is a non-empty directory without
// PG_VERSION, or when initdb fails; a data directory it created is removed
// again on failure.
func initDataDir(ctx context.Context, bin, data string, acct *account, noSync bool, w io.Writer) error {
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
		return nil
	}
	entries, err := os.ReadDir(data)
	existed := err == nil
	if len(entries) > 0 {
		return fmt.Errorf("pglocal: %s is not empty but holds no PostgreSQL data directory (no PG_VERSION); remove it", data)
	}
	args := []string{"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
	if noSync {
		args = append(args, "--no-sync")
	}
	tail := newTailBuffer()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), args...)
	cmd.Dir = filepath.Dir(data)
	out := io.MultiWriter(w, tail)
	cmd.Stdout, cmd.Stderr = out, out // one writer: exec then never writes concurrently
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: acct.credential()}
	if err := cmd.Run(); err != nil {
		if !existed {
			_ = os.RemoveAll(data)
		}
		return fmt.Errorf("pglocal: initdb %s: %w\n%s", data, err, tail)
	}
	return nil
}

// launch starts postgres on l and waits until it is ready. It returns an
// error wrapping ErrPortTaken when the port is in use.
func launch(ctx context.Context, bin string, l *layout, acct *account, opts Options, w io.Writer) (*Server, error) {
	port, err := choosePort(opts.Port)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir: l.dir, DataDir: l.data, SocketDir: l.socket, Port: port, Note: strings.Join(l.notes, "; "),
		layout: l, log: w, tail: newTailBuffer(), done: make(chan struct{}),
	}
	if err := s.spawn(bin, acct, opts.NoSync, opts.Settings); err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	if err := s.waitReady(ctx, timeout); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// choosePort returns port if it is free on 127.0.0.1, or a free port when
// port is 0. It returns an error wrapping ErrPortTaken if port is in use.
func choosePort(port int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("pglocal: 127.0.0.1:%d: %w: %v", port, ErrPortTaken, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// spawn starts the postgres process, with settings, in its own process group and a
// goroutine that records its exit. The goroutine stays locked to the OS
// thread that forked postgres, because on Linux the parent-death signal
// fires when that thread (not the process) exits.
func (s *Server) spawn(bin string, acct *account, noSync bool, settings []string) error {
	args := []string{"-D", s.DataDir, "-k", s.SocketDir, "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}
	if noSync {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = s.Dir
	out := io.MultiWriter(s.log, s.tail)
	cmd.Stdout, cmd.Stderr = out, out // one writer: exec then never writes concurrently
	cmd.SysProcAttr = serverProcAttr(acct.credential())
	cmd.WaitDelay = 5 * time.Second
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("pglocal: starting postgres: %w", err)
			return
		}
		s.proc = cmd.Process
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return <-started
}

// waitReady polls until the server accepts connections, the process exits,
// ctx ends or timeout passes. The error names the cause and includes the
// tail of the server's output.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := s.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			if strings.Contains(s.tail.String(), "already in use") {
				return fmt.Errorf("pglocal: postgres could not listen on 127.0.0.1:%d: %w\n%s", s.Port, ErrPortTaken, s.tail)
			}
			return fmt.Errorf("pglocal: postgres exited during startup (%v)\n%s", s.waitErr, s.tail)
		case <-ctx.Done():
			return fmt.Errorf("pglocal: postgres on 127.0.0.1:%d not ready: %w (last error: %v)\n%s", s.Port, ctx.Err(), err, s.tail)
		case <-tick.C:
		}
	}
}

// ping connects over TCP and checks that the server answering is this one,
// not another that holds the port.
func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var dataDir string
	if err := conn.QueryRow(ctx, "show data_directory").Scan(&dataDir); err != nil {
		return err
	}
	if filepath.Clean(dataDir) != s.DataDir {
		return fmt.Errorf("another server (data directory %s) answers on port %d", dataDir, s.Port)
	}
	return nil
}

// URL returns a connection URL for database dbname as the superuser
// postgres over TCP, e.g. postgres://postgres@127.0.0.1:54321/app?sslmode=disable.
func (s *Server) URL(dbname string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, url.PathEscape(dbname))
}

// Stop shuts the server down: SIGINT (PostgreSQL's fast shutdown, which
// disconnects clients), then SIGKILL to its process group if it has not
// exited within 15 seconds. It is idempotent and safe on a nil *Server. It
// returns an error if the server had to be killed or had already exited
// with a failure.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		defer s.layout.removeTempSocket()
		select {
		case <-s.done:
			if s.waitErr != nil {
				s.stopErr = fmt.Errorf("pglocal: postgres had already exited: %v\n%s", s.waitErr, s.tail)
			}
			return
		default:
		}
		_ = s.proc.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			s.kill()
			s.stopErr = fmt.Errorf("pglocal: postgres did not shut down within %s and was killed", stopTimeout)
		}
	})
	return s.stopErr
}

// kill sends SIGKILL to the server's whole process group and waits
// (bounded) for the postmaster to be reaped.
func (s *Server) kill() {
	_ = syscall.Kill(-s.proc.Pid, syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
	}
}

// Tail keeps the last Size bytes written to it: a process's output for an
// error message, or a busy log a test searches. It is safe for concurrent use.
type Tail struct {
	mu   sync.Mutex
	buf  []byte
	size int
}

// tailSize is how much of PostgreSQL's output a startup error shows.
const tailSize = 4 << 10

// NewTail returns a Tail keeping the last size bytes.
func NewTail(size int) *Tail { return &Tail{size: size} }

func newTailBuffer() *Tail { return NewTail(tailSize) }

// Write appends p, dropping what falls out of the window; it never fails.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.size {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.size:]...)
	}
	return len(p), nil
}

// String returns what the window holds, without surrounding white space.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
