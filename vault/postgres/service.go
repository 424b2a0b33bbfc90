package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// DefaultCVCTTL is how long an unrevealed CVC is kept when Config.CVCTTL is 0.
const DefaultCVCTTL = time.Hour

// Config holds what a Service needs. Pool and KEK are required.
type Config struct {
	Pool   *pgxpool.Pool
	KEK    tink.AEAD        // the root key-encryption key
	Now    func() time.Time // the clock; time.Now when nil
	CVCTTL time.Duration    // how long an unrevealed CVC is kept; DefaultCVCTTL when 0
	Logger *slog.Logger     // slog.Default() when nil
	// LeaseTTL is how long a key job's worker holds it without renewing;
	// DefaultLeaseTTL when 0.
	LeaseTTL time.Duration
	// KeyCacheTTL is how long unwrapped tenant keys serve before they are
	// unwrapped again through the KEK; DefaultKeyCacheTTL when 0.
	KeyCacheTTL time.Duration
	// EgressAllowLoopback admits webhook URLs on loopback hosts (and plain
	// http to them), as the egress client does (VAULT_EGRESS_ALLOW_LOOPBACK):
	// for development and tests.
	EgressAllowLoopback bool
}

// DefaultLeaseTTL is how long a key job lease lasts without renewal.
const DefaultLeaseTTL = 30 * time.Second

// Service is the vault: every operation on tenants, API keys, tokens and the
// audit trail goes through it. It is safe for concurrent use.
type Service struct {
	db       *pgxpool.Pool
	keys     *keyring
	now      func() time.Time
	cvcTTL   time.Duration
	leaseTTL time.Duration
	log      *slog.Logger
	// egressLoopback admits loopback webhook URLs (Config.EgressAllowLoopback).
	egressLoopback bool
	usage          keyUsage
	outbox         outboxSignal // wakes webhook deliverers (event.go)
	apiKeys        apiKeyCache  // recently authenticated keys (apikeycache.go)
	// importCounts gathers import attempt counters (importcounts.go).
	importCounts importCounts
	// reads and reveals look up the tokens of concurrent requests and
	// commit their audit rows together (token_lookup.go).
	reads, reveals lookupBatch
	// newTokens commits concurrent new tokens together (token_batch.go).
	newTokens newTokenBatch
}

// NewService returns a Service for cfg, or an error when a required part is
// missing.
func NewService(cfg Config) (*Service, error) {
	if cfg.Pool == nil || cfg.KEK == nil {
		return nil, errors.New("vault: Config.Pool and Config.KEK are required")
	}
	s := &Service{db: cfg.Pool, now: cfg.Now, cvcTTL: cfg.CVCTTL, log: cfg.Logger, egressLoopback: cfg.EgressAllowLoopback}
	s.reads.limit = readBatchesInFlight
	if s.now == nil {
		s.now = time.Now
	}
	if s.leaseTTL = cfg.LeaseTTL; s.leaseTTL <= 0 {
		s.leaseTTL = DefaultLeaseTTL
	}
	if s.cvcTTL <= 0 {
		s.cvcTTL = DefaultCVCTTL
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.keys = newKeyring(cfg.Pool, cfg.KEK, cfg.KeyCacheTTL, s.clock)
	return s, nil
}

// clock returns the current time in UTC, truncated to the microsecond
// PostgreSQL stores.
func (s *Service) clock() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// Ping returns nil when the database answers, or a KindUnavailable error.
func (s *Service) Ping(ctx context.Context) error {
	if err := s.db.Ping(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// Ready returns nil when the database answers, the root KEK can open a
// tenant keyset and no tenant's keysets failed to open under it; otherwise
// a KindUnavailable error (the database or the KEK is down) or a
// KindMisconfigured one (kek_mismatch, naming how many tenants the KEK
// cannot open).
func (s *Service) Ready(ctx context.Context) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if err := s.CheckKEK(ctx); err != nil && !isKEKMismatch(err) {
		return err
	}
	return s.keys.checkMismatched(ctx)
}
