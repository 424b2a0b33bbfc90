//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeVaultEnv makes the test binary a stand-in for `cardvault serve`.
const fakeVaultEnv = "E2E_FAKE_VAULT"

// TestFakeVault is the child of the supervisor tests. With
// E2E_FAKE_VAULT=serve it does what the supervisor relies on in `cardvault
// serve`: it listens on VAULT_LISTEN, logs the "serving" line with the
// address, answers GET /readyz and exits 0 on SIGTERM. With
// E2E_FAKE_VAULT=fail it logs an error and exits 3. Run directly, it skips.
func TestFakeVault(t *testing.T) {
	switch os.Getenv(fakeVaultEnv) {
	case "":
		t.Skip("the child of the supervisor tests")
	case "fail":
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"cannot reach the database"}`)
		os.Exit(3)
	}
	if os.Getenv("VAULT_FROM_PARENT") != "" {
		os.Exit(4) // the parent's VAULT_* variables must not reach the child
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", os.Getenv("VAULT_LISTEN"))
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(http.ResponseWriter, *http.Request) {})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, `{"level":"INFO","msg":"serving","addr":%q}`+"\n", ln.Addr().String())
	<-ctx.Done()
	require.NoError(t, srv.Close())
}

// startFake starts the test binary as a fake vault in mode; the test kills
// it when it ends.
func startFake(t *testing.T, mode string) (*Vault, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFakeVault$", "-test.count=1")
	cmd.Env = []string{fakeVaultEnv + "=" + mode}
	v, err := StartVault(context.Background(), VaultOptions{Command: cmd, LogPath: filepath.Join(t.TempDir(), "vault.log"),
		StopGrace: 10 * time.Second, ReadyTimeout: 30 * time.Second})
	if v != nil {
		t.Cleanup(v.Kill)
	}
	return v, err
}

func TestStartVaultWaitsUntilReadyAndSignalsIt(t *testing.T) {
	t.Setenv("VAULT_FROM_PARENT", "1")
	v, err := startFake(t, "serve")
	require.NoError(t, err)
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, v.Addr(), "the address of the serving line")
	c := NewClient(v.URL(), "", 1, 5*time.Second)
	defer c.Close()
	_, err = c.Call(context.Background(), http.MethodGet, "/readyz", nil, http.StatusOK)
	require.NoError(t, err)
	_, err = v.CPUSeconds()
	assert.NoError(t, err)
	rss, err := v.RSSKB()
	require.NoError(t, err)
	assert.Positive(t, rss)
	peak, err := v.PeakRSS()
	require.NoError(t, err)
	assert.Positive(t, peak)

	require.NoError(t, v.Signal(syscall.SIGTERM))
	code, err := v.Wait(10 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "log: %s", v.LogTail(2048))
	_, err = v.CPUSeconds()
	assert.Error(t, err, "no CPU time once it exited")
}

func TestStopAndKillEndTheChild(t *testing.T) {
	tests := []struct {
		name     string
		end      func(v *Vault)
		wantCode int
	}{
		{"Stop sends SIGTERM", (*Vault).Stop, 0},
		{"Kill sends SIGKILL", (*Vault).Kill, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := startFake(t, "serve")
			require.NoError(t, err)
			tt.end(v)
			select {
			case <-v.Exited():
			default:
				t.Fatal("the child still runs")
			}
			code, err := v.Wait(0)
			require.NoError(t, err)
			assert.Equal(t, tt.wantCode, code)
			tt.end(v) // a second call is harmless
		})
	}
}

func TestStartVaultReportsAnEarlyExitWithTheEndOfItsLog(t *testing.T) {
	_, err := startFake(t, "fail")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited before it was ready")
	assert.Contains(t, err.Error(), "cannot reach the database")
}
