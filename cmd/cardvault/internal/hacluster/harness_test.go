//go:build ha && linux

package hacluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
	"github.com/cardvault/cardvault/cmd/cardvault/internal/hacluster"
	"github.com/cardvault/cardvault/importer/stripesim"
	"github.com/cardvault/cardvault/vault"
)

// replicas is how many vault processes serve behind the load balancer.
const replicas = 2

// simKey is the simulated Stripe account's secret key.
const simKey = "sk_test_cardvaultHATest0000001"

// harness is the cluster, the vault binary, its replicas behind a
// round-robin load balancer, a tenant with an every-scope key, a simulated
// Stripe account that forwards into the load balancer and a webhook
// receiver.
type harness struct {
	t        *testing.T
	files    string // the KEK and the replicas' logs
	cluster  *hacluster.Cluster
	bin      string
	env      []string // VAULT_DATABASE_URL and VAULT_KEK_URI
	dbURL    string
	lb       *balancer
	vaults   []*e2e.Vault
	sim      *stripesim.Server
	hooks    *receiver
	api      *e2e.Client
	tenantID string
	key      string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t}
	h.startCluster()
	h.bin = buildVault(t)
	files := h.files
	h.dbURL = h.cluster.URL(h.cluster.Database())
	h.env = []string{"VAULT_DATABASE_URL=" + h.dbURL, "VAULT_KEK_URI=local://" + filepath.Join(files, "kek.json"), "VAULT_OPERATOR=ha-test"}
	h.cli("kek", "create", "--out", filepath.Join(files, "kek.json"))
	h.cli("migrate")
	h.tenantID = strings.TrimSpace(h.cli("tenant", "create", "ha"))
	h.key = strings.TrimSpace(h.cli("apikey", "create", "--tenant", h.tenantID, "--scopes", allScopes()))
	sim, err := stripesim.Start("127.0.0.1:0", stripesim.Config{APIKeys: []string{simKey}})
	require.NoError(t, err)
	t.Cleanup(func() { sim.Close() })
	h.sim = sim
	h.lb = newBalancer(t)
	for i := range replicas {
		h.vaults = append(h.vaults, h.startVault(files, i))
	}
	h.lb.route(h.vaults)
	h.api = e2e.NewClient(h.lb.URL, h.key, 4, 30*time.Second)
	t.Cleanup(h.api.Close)
	h.hooks = newReceiver(t)
	_, err = h.api.Call(context.Background(), http.MethodPut, "/webhook", []byte(`{"url":"`+h.hooks.URL+`/hooks"}`), http.StatusOK)
	require.NoError(t, err)
	return h
}

// startCluster starts a monitor, a primary and two standbys in a folder of
// its own under /tmp (the server account must reach it when root), and
// waits for them to be in sync. On failure the nodes' logs are quoted.
func (h *harness) startCluster() {
	t := h.t
	dir, err := os.MkdirTemp("", "cardvault-ha-")
	require.NoError(t, err)
	h.files, err = os.MkdirTemp("", "cardvault-ha-files-")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := hacluster.Start(ctx, dir, hacluster.Options{Log: testLog{t}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			h.quoteLogs()
		}
		c.Stop()
		for _, n := range c.Nodes {
			_ = c.RepairDisk(n) // a run that failed with a disk still failed
		}
		os.RemoveAll(dir)
		os.RemoveAll(h.files)
	})
	h.cluster = c
	states, err := c.WaitHealthy(ctx)
	require.NoError(t, err)
	t.Logf("cluster up in %s: %v", time.Since(start).Round(100*time.Millisecond), states)
}

// quoteLogs logs the end of every replica's and node's log, then the
// monitor's states and last events: what a failed run's excerpt ends with.
func (h *harness) quoteLogs() {
	for i := range h.vaults {
		b, _ := os.ReadFile(filepath.Join(h.files, fmt.Sprintf("vault-%d.log", i)))
		var errs []string
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
				errs = append(errs, lastBytes([]byte(line), 400))
			}
		}
		h.t.Logf("---- vault %d: %d errors and warnings, the last ones:\n%s", i, len(errs), strings.Join(errs[max(0, len(errs)-25):], "\n"))
	}
	for _, n := range append([]*hacluster.Node{h.cluster.Monitor}, h.cluster.Nodes...) {
		b, _ := os.ReadFile(h.cluster.LogPath(n))
		h.t.Logf("---- %s log (end):\n%s", n.Name, lastBytes(b, 3000))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	states, err := h.cluster.States(ctx)
	h.t.Logf("---- monitor: states %v (%v); last events:\n%s", states, err, h.cluster.Events(ctx, 15))
}

func lastBytes(b []byte, n int) string { return string(b[max(0, len(b)-n):]) }

// startVault runs replica i of `cardvault serve` on the cluster.
func (h *harness) startVault(files string, i int) *e2e.Vault {
	env := append([]string{
		"VAULT_PUBLIC_URL=" + h.lb.URL, // Stripe forwards through the load balancer
		"VAULT_STRIPE_API_BASE=" + h.sim.URL(),
		"VAULT_IMPORT_MAX_ATTEMPTS=8", // see docs/operations.md: 8 attempts outlast a failover
		"VAULT_KEY_REFRESH=1s",
		"VAULT_EGRESS_ALLOW_LOOPBACK=true", // the webhook receiver listens on loopback
	}, h.env...)
	v, err := e2e.StartVault(context.Background(), e2e.VaultOptions{Command: exec.Command(h.bin, "serve"), Env: env,
		LogPath: filepath.Join(files, fmt.Sprintf("vault-%d.log", i)), StopGrace: 25 * time.Second})
	if v != nil {
		h.t.Cleanup(v.Stop)
	}
	require.NoError(h.t, err)
	return v
}

// cli runs the vault binary with args against the cluster and returns its
// standard output.
func (h *harness) cli(args ...string) string {
	h.t.Helper()
	cmd := exec.Command(h.bin, args...)
	cmd.Env = append(withoutVaultEnv(), h.env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(h.t, cmd.Run(), "cardvault %s: %s", args[0], errOut.String())
	return out.String()
}

// withoutVaultEnv returns this process's environment without VAULT_*.
func withoutVaultEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			out = append(out, kv)
		}
	}
	return out
}

// pool opens a pool on the cluster (the primary), closed when the test ends.
func (h *harness) pool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	require.NoError(h.t, err)
	h.t.Cleanup(pool.Close)
	return pool
}

// allScopes returns every scope, comma-separated.
func allScopes() string {
	s := make([]string, len(vault.AllScopes))
	for i, sc := range vault.AllScopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ",")
}

// buildVault builds cardvault into the test's temp dir.
func buildVault(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cardvault")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/cardvault/cardvault/cmd/cardvault").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// testLog sends the cluster's progress lines to t.Log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ---- the load balancer ----

// balancer sends requests to the replicas in turn, as a load balancer in
// front of N replicas does, and counts the answers to /cde-import per
// business key: a payment method forwarded by an import is acknowledged
// once.
type balancer struct {
	*httptest.Server
	targets []*url.URL
	next    atomic.Uint64
	proxies []*httputil.ReverseProxy

	mu       sync.Mutex
	imported map[string][]int // business key → statuses of its /cde-import answers
}

func newBalancer(t *testing.T) *balancer {
	b := &balancer{imported: map[string][]int{}}
	b.Server = httptest.NewServer(b)
	t.Cleanup(b.Close)
	return b
}

// route sends to the replicas from now on.
func (b *balancer) route(vaults []*e2e.Vault) {
	for _, v := range vaults {
		u, _ := url.Parse(v.URL())
		b.proxies = append(b.proxies, httputil.NewSingleHostReverseProxy(u))
	}
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := b.proxies[b.next.Add(1)%uint64(len(b.proxies))]
	if r.URL.Path != "/cde-import" {
		p.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var fwd struct {
		Metadata struct {
			BusinessKey string `json:"business_key"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(body, &fwd)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	p.ServeHTTP(rec, r)
	b.mu.Lock()
	b.imported[fwd.Metadata.BusinessKey] = append(b.imported[fwd.Metadata.BusinessKey], rec.status)
	b.mu.Unlock()
}

// importAnswers returns the statuses of the /cde-import answers for key.
func (b *balancer) importAnswers(key string) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.imported[key]...)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// ---- the webhook receiver ----

// receiver answers every webhook 200 and counts deliveries per event id.
type receiver struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int    // event id → deliveries
	types map[string]string // event id → type
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{count: map[string]int{}, types: map[string]string{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var ev struct{ ID, Type string }
		_ = json.NewDecoder(req.Body).Decode(&ev)
		r.mu.Lock()
		r.count[ev.ID]++
		r.types[ev.ID] = ev.Type
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// tally returns how many distinct events of type typ arrived and how many
// events arrived more than once.
func (r *receiver) tally(typ string) (events, twice int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.count {
		if r.types[id] != typ {
			continue
		}
		events++
		if n > 1 {
			twice++
		}
	}
	return events, twice
}
