package vaulttest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/egress"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// KEK returns a fresh local root KEK kept in tb's temp dir, and its URI.
func KEK(tb testing.TB) (tink.AEAD, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "kek.json")
	if err := crypto.CreateLocalKEK(path); err != nil {
		tb.Fatalf("vaulttest: kek: %v", err)
	}
	uri := "local://" + path
	kek, err := crypto.OpenKEK(context.Background(), uri)
	if err != nil {
		tb.Fatalf("vaulttest: kek: %v", err)
	}
	return kek, uri
}

// sharedKEK is the root KEK of every service of a test package that brings
// none: like a deployment, one package database has one KEK.
var sharedKEK = sync.OnceValues(func() (tink.AEAD, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, err
	}
	return aead.New(h)
})

// Options tune NewService; zero values mean the package's shared KEK, the real clock,
// the default CVC TTL and a discarded log.
type Options struct {
	KEK    tink.AEAD
	Now    func() time.Time
	CVCTTL time.Duration
	Logger *slog.Logger
	// Egress is the client forwards go out through (see LoopbackEgress);
	// AllowLoopback admits loopback forwarding destinations.
	Egress        *egress.Client
	AllowLoopback bool
	// NoLoopbackEgress refuses loopback webhook URLs, as production does;
	// tests otherwise admit them (their receivers listen on loopback).
	NoLoopbackEgress bool
	// AccessFailureWindow is how long refusals of one source share an
	// audit row (postgres.DefaultAccessFailureWindow when 0); the rows
	// pending when the test ends are written then.
	AccessFailureWindow time.Duration
	// AccessFailureSources caps the sources one window keeps apart
	// (postgres.DefaultAccessFailureSources when 0).
	AccessFailureSources int
}

// NewService returns a postgres.Service on a new pool to dbURL, closed when tb
// ends. It fails tb on error.
func NewService(tb testing.TB, dbURL string, o Options) *postgres.Service {
	tb.Helper()
	if o.KEK == nil {
		kek, err := sharedKEK()
		if err != nil {
			tb.Fatalf("vaulttest: kek: %v", err)
		}
		o.KEK = kek
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	svc, err := postgres.NewService(postgres.Config{Pool: Pool(tb, dbURL), KEK: o.KEK, Now: o.Now, CVCTTL: o.CVCTTL, Logger: o.Logger,
		Egress: o.Egress, AllowLoopback: o.AllowLoopback || !o.NoLoopbackEgress, AccessFailureWindow: o.AccessFailureWindow,
		AccessFailureSources: o.AccessFailureSources})
	if err != nil {
		tb.Fatalf("vaulttest: service: %v", err)
	}
	tb.Cleanup(func() { _ = svc.FlushAccessFailures(context.Background()) }) // before the pool closes
	return svc
}

// Tenant creates a tenant and an API key holding scopes (every scope when
// none are given) and returns the tenant id and the key's secret.
func Tenant(tb testing.TB, svc *postgres.Service, scopes ...vault.Scope) (uuid.UUID, string) {
	tb.Helper()
	ctx := context.Background()
	t, err := svc.CreateTenant(ctx, "test-"+uuid.NewString()[:8])
	if err != nil {
		tb.Fatalf("vaulttest: tenant: %v", err)
	}
	if len(scopes) == 0 {
		scopes = vault.AllScopes
	}
	secret, _, err := svc.CreateAPIKey(ctx, t.ID, scopes, "test")
	if err != nil {
		tb.Fatalf("vaulttest: api key: %v", err)
	}
	return t.ID, secret
}

// Actor authenticates secret and returns the actor it stands for.
func Actor(tb testing.TB, svc *postgres.Service, secret string) vault.Actor {
	tb.Helper()
	a, err := svc.Authenticate(context.Background(), secret, "req_test", "127.0.0.1")
	if err != nil {
		tb.Fatalf("vaulttest: authenticate: %v", err)
	}
	return a
}

// TestCard is one public test card number of a brand, from testdata.
type TestCard struct {
	Number      string `json:"number"`
	Scheme      string `json:"scheme"`
	Description string `json:"description"`
}

// Cards returns the public test cards of testdata/cards.json.
func Cards(tb testing.TB) []TestCard {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(RepoRoot(tb), "testdata", "cards.json"))
	if err != nil {
		tb.Fatalf("vaulttest: cards: %v", err)
	}
	var doc struct {
		Cards []TestCard `json:"cards"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		tb.Fatalf("vaulttest: cards: %v", err)
	}
	return doc.Cards
}

// RepoRoot returns the directory holding go.mod, found by walking up from
// the test's working directory.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("vaulttest: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Clock is a settable clock for injecting into a Service.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// LuhnNumber returns the i-th Luhn-valid number of length digits that starts
// with prefix: distinct test numbers for bulk tests.
func LuhnNumber(prefix string, length, i int) string {
	body := fmt.Sprintf("%s%0*d", prefix, length-len(prefix)-1, i)
	sum := 0
	for j := len(body) - 1; j >= 0; j-- {
		d := int(body[j] - '0')
		if (len(body)-1-j)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + string(rune('0'+(10-sum%10)%10))
}

// LoopbackEgress returns an egress client that admits loopback destinations
// and trusts the certificates of the given TLS test servers (and nothing
// else), with timeout as its default exchange timeout (egress's when 0).
func LoopbackEgress(timeout time.Duration, servers ...*httptest.Server) *egress.Client {
	roots := x509.NewCertPool()
	for _, srv := range servers {
		if c := srv.Certificate(); c != nil {
			roots.AddCert(c)
		}
	}
	return egress.New(egress.Config{AllowLoopback: true, RootCAs: roots, Timeout: timeout})
}
