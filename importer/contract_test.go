package importer_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault/card"
)

// stripeMockModule is the stripe-mock release the contract test runs: it
// validates requests against Stripe's OpenAPI spec.
const stripeMockModule = "github.com/stripe/stripe-mock@v0.203.0"

// stripeMock returns the base URL of a stripe-mock started for the test,
// installing it with `go install` when it is not on PATH or in GOPATH/bin.
// It skips the test, saying why, only when stripe-mock cannot be installed.
func stripeMock(t *testing.T) string {
	t.Helper()
	bin, err := findStripeMock()
	if err != nil {
		t.Skipf("stripe-mock unavailable (%v); install it with: go install %s", err, stripeMockModule)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	cmd := exec.Command(bin, "-http-addr", addr)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/customers")
		if err == nil {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not start on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process with a deadline
	}
}

// findStripeMock looks for stripe-mock on PATH and in GOPATH/bin, and
// installs it there when absent.
func findStripeMock() (string, error) {
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	gobin, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", err
	}
	p := filepath.Join(strings.TrimSpace(string(gobin)), "bin", "stripe-mock")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "go", "install", stripeMockModule)
	install.Env = append(os.Environ(), "GOBIN="+filepath.Dir(p), "GOFLAGS=")
	if out, err := install.CombinedOutput(); err != nil {
		return "", errors.New(strings.TrimSpace(string(out)))
	}
	return p, nil
}

// TestForwardRequestMatchesStripesContract sends the forwarding request the
// importer builds, through stripe-go, to stripe-mock, which refuses any
// request that does not match Stripe's OpenAPI spec.
func TestForwardRequestMatchesStripesContract(t *testing.T) {
	base := stripeMock(t)
	sc := stripe.NewClient("sk_test_123", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(base), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	params := importer.ForwardParams(uuid.UUID{7}, "pm_1Contract", "https://vault.example/cde-import", card.NewSecret("cvk_contract"), 1)

	fr, err := sc.V1ForwardingRequests.Create(context.Background(), params)

	require.NoError(t, err, "stripe-mock refused the forwarding request")
	require.Equal(t, "forwarding.request", string(fr.Object))
}

// TestImportJobAgainstStripeMock runs a whole job against stripe-mock: the
// list calls and the forwards the importer makes must all be accepted.
// stripe-mock's canned forward answer holds no token, so items end failed
// with that reason — never with a Stripe 4xx.
func TestImportJobAgainstStripeMock(t *testing.T) {
	base := stripeMock(t)
	w := newWorld(t, stripesim.SeedSpec{})
	w.stripe.URL = base // point the runner at stripe-mock instead of the simulator
	w.runner("contract", func(c *importer.Config) { c.MaxAttempts = 1 })

	var rec importRecord
	require.Equal(t, http.StatusAccepted, w.do(http.MethodPost, "/tokens/imports",
		map[string]any{"provider": "stripe", "stripe": map[string]string{"api_key": "sk_test_123456789"}}, &rec))
	got := w.await(rec.ID, time.Minute)

	require.Equal(t, "finished", got.Status)
	require.Positive(t, got.Counts.Total, "stripe-mock lists at least one payment method")
	var page struct {
		Data []struct {
			Status    string  `json:"status"`
			LastError *string `json:"last_error"`
		} `json:"data"`
	}
	require.Equal(t, http.StatusOK, w.do(http.MethodGet, "/tokens/imports/"+rec.ID.String()+"/items?limit=100", nil, &page))
	for _, it := range page.Data {
		if it.LastError != nil {
			require.NotRegexp(t, `^stripe 4\d\d`, *it.LastError, "Stripe's contract refused a request")
		}
	}
}
