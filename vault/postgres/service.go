package postgres

import (
	"context"
	"errors"
	"log/slog"
	mathrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/egress"
	"github.com/cardvault/cardvault/internal/metrics"
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
	// Egress is the client every forward goes out through;
	// egress.New(egress.Config{AllowLoopback: AllowLoopback}) when nil.
	Egress *egress.Client
	// AllowLoopback admits loopback forwarding destinations (localhost,
	// 127.0.0.0/8, [::1], over plain http too): development and tests only.
	AllowLoopback bool
	// Metrics records group commits, the tenant key cache, root KEK calls,
	// CVC sweeps and re-encryption; nil records nothing.
	Metrics *metrics.Store
	// ForwardMetrics records each forward's outcome and destination
	// latency; nil records nothing.
	ForwardMetrics *metrics.Forwards
	// AccessFailureWindow is how long repeated refusals of one source are
	// counted in one audit row; DefaultAccessFailureWindow when 0.
	AccessFailureWindow time.Duration
	// AccessFailureSources caps the sources one window keeps apart;
	// DefaultAccessFailureSources when 0.
	AccessFailureSources int
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
	usage    keyUsage
	outbox   outboxSignal // wakes webhook deliverers (event.go)
	apiKeys  apiKeyCache  // recently authenticated keys (apikeycache.go)
	// importCounts gathers import attempt counters (importcounts.go).
	importCounts importCounts
	// activeChecks answers concurrent ActiveImports calls with one query
	// (importwork.go).
	activeChecks groupCommit[*activeCheck]
	// fileOrder orders the commits of a file import's concurrent batches
	// (fileimport_rows.go).
	fileOrder fileBatchOrder
	// reads and reveals look up the tokens of concurrent requests and
	// commit their audit rows together (token_lookup.go).
	reads, reveals lookupBatch
	// newTokens commits concurrent new tokens together (token_batch.go).
	newTokens newTokenBatch
	// updates reconciles the tokens of concurrent tokenizations whose
	// business key holds another card together (token_update.go).
	updates tokenUpdateBatch
	// replays answers repeated imports of unchanged cards together
	// (token_replay.go).
	replays replayBatch
	// forwardPreps commits the pre-send transactions of concurrent
	// forwards together (forwarding_prepare.go).
	forwardPreps forwardPrepBatch
	// outcomes commits the outcomes of concurrent forwards together
	// (forwarding_outcome.go).
	outcomes outcomeBatch
	// egress sends forwards; allowLoopback admits loopback destinations
	// (forwarding.go).
	egress        *egress.Client
	allowLoopback bool
	metrics       *metrics.Store // nil without metrics
	// forwardMetrics records each forward (forwarding_send.go); nil
	// without metrics.
	forwardMetrics *metrics.Forwards
	// failures counts refused requests into audit rows (auditfailures.go).
	failures accessFailures
	// audit caches the audit chain keys (auditlanes.go).
	audit auditKeys
}

// NewService returns a Service for cfg, or an error when a required part is
// missing.
func NewService(cfg Config) (*Service, error) {
	if cfg.Pool == nil || cfg.KEK == nil {
		return nil, errors.New("vault: Config.Pool and Config.KEK are required")
	}
	s := &Service{db: cfg.Pool, now: cfg.Now, cvcTTL: cfg.CVCTTL, log: cfg.Logger,
		egress: cfg.Egress, allowLoopback: cfg.AllowLoopback, forwardMetrics: cfg.ForwardMetrics}
	if s.egress == nil {
		s.egress = egress.New(egress.Config{AllowLoopback: cfg.AllowLoopback})
	}
	s.reads.limit, s.reads.overlapAt = readBatchesInFlight, readOverlapAt
	s.audit.readerTurn = mathrand.IntN(auditLaneCount / 2)
	s.failures.window, s.failures.sources = cfg.AccessFailureWindow, cfg.AccessFailureSources
	if s.failures.window <= 0 {
		s.failures.window = DefaultAccessFailureWindow
	}
	if s.failures.sources <= 0 {
		s.failures.sources = DefaultAccessFailureSources
	}
	s.replays.limit = replayBatchesInFlight
	s.updates.limit = updateBatchesInFlight
	s.outcomes.limit = outcomeBatchesInFlight
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
	s.keys = newKeyring(cfg.Pool, cfg.Metrics.CountKEK(cfg.KEK), cfg.KeyCacheTTL, s.clock)
	s.setMetrics(cfg.Metrics)
	return s, nil
}

// setMetrics hands m to the parts of s that record.
func (s *Service) setMetrics(m *metrics.Store) {
	s.metrics, s.keys.metrics = m, m
	s.newTokens.sizes = m.BatchSizes(metrics.BatchTokenCreate)
	s.reads.sizes = m.BatchSizes(metrics.BatchTokenRead)
	s.reveals.sizes = m.BatchSizes(metrics.BatchTokenReveal)
	s.forwardPreps.sizes = m.BatchSizes(metrics.BatchForwardPrepare)
	s.outcomes.sizes = m.BatchSizes(metrics.BatchForwardOutcome)
	s.importCounts.batch.sizes = m.BatchSizes(metrics.BatchImportAttempt)
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
