package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault/postgres"
)

// telemetry is a serving process's metrics: the registry GET /metrics
// serves (one per process, never the global one) and the recorders handed
// to the parts that record. A nil *telemetry is metrics off: every
// accessor returns a nil recorder, which records nothing.
type telemetry struct {
	reg      *prometheus.Registry
	http     *metrics.HTTP
	store    *metrics.Store
	imports  *metrics.Imports
	webhooks *metrics.Webhooks
	// forwards is the recorder for forwards of card data, by destination
	// id and outcome, with the destination's latency: the forwarding code
	// records through Forwards().ForwardObserved.
	forwards *metrics.Forwards
	// exports records export attempts by outcome.
	exports *metrics.Exports
}

// newTelemetry returns the metrics of a process serving on cfg, or nil when
// cfg turns them off (no VAULT_METRICS_LISTEN). The Go runtime, process and
// build collectors are registered; watch adds the database's.
func newTelemetry(cfg config) *telemetry {
	if cfg.MetricsListen == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	if err := metrics.RegisterRuntime(reg); err != nil {
		panic(err) // a fresh registry holds nothing to clash with
	}
	return &telemetry{reg: reg, http: metrics.NewHTTP(reg), store: metrics.NewStore(reg),
		imports: metrics.NewImports(reg), webhooks: metrics.NewWebhooks(reg),
		forwards: metrics.NewForwards(reg, metrics.DefaultMaxDestinations), exports: metrics.NewExports(reg)}
}

// watch registers the collectors read at scrape time: the state of svc's
// database (outbox, audit chain lag, jobs, key ages) and, when pool is not
// nil, the pool's connections and waits.
func (t *telemetry) watch(svc *postgres.Service, pool *pgxpool.Pool, cryptoperiod time.Duration) {
	if t == nil {
		return
	}
	t.reg.MustRegister(metrics.NewStateCollector(svc, metrics.StateOptions{Cryptoperiod: cryptoperiod}))
	if pool != nil {
		t.reg.MustRegister(metrics.NewPoolCollector(func() metrics.PoolStats { return poolStats(pool) }))
	}
}

// poolStats is the pool's Stat in the metrics' terms.
func poolStats(pool *pgxpool.Pool) metrics.PoolStats {
	s := pool.Stat()
	return metrics.PoolStats{Acquired: s.AcquiredConns(), Idle: s.IdleConns(), Constructing: s.ConstructingConns(),
		Max: s.MaxConns(), Acquires: s.AcquireCount(), WaitedAcquires: s.EmptyAcquireCount(),
		CanceledAcquires: s.CanceledAcquireCount(), WaitTime: s.EmptyAcquireWaitTime()}
}

// The recorders of each part; nil (recording nothing) when metrics are off.
func (t *telemetry) HTTP() *metrics.HTTP {
	if t == nil {
		return nil
	}
	return t.http
}

// Store returns the store's recorder, nil when metrics are off.
func (t *telemetry) Store() *metrics.Store {
	if t == nil {
		return nil
	}
	return t.store
}

// Imports returns the importer's recorder, nil when metrics are off.
func (t *telemetry) Imports() *metrics.Imports {
	if t == nil {
		return nil
	}
	return t.imports
}

// Webhooks returns the deliverer's recorder, nil when metrics are off.
func (t *telemetry) Webhooks() *metrics.Webhooks {
	if t == nil {
		return nil
	}
	return t.webhooks
}

// Forwards returns the forwarding recorder, nil when metrics are off.
func (t *telemetry) Forwards() *metrics.Forwards {
	if t == nil {
		return nil
	}
	return t.forwards
}

// parseMetricsListen validates VAULT_METRICS_LISTEN: empty (off) or
// host:port. Any host is allowed, since Prometheus scrapes from another
// machine; the exposition holds no card data, token, key or tenant id.
func parseMetricsListen(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("VAULT_METRICS_LISTEN %q must be host:port, such as 127.0.0.1:9464 or :9464", addr)
	}
	return addr, nil
}

// startMetricsListener serves GET /metrics from t's registry on addr, a
// listener of its own apart from the API, until the returned stop is
// called. It returns an error when it cannot listen.
func startMetricsListener(addr string, t *telemetry, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(t.reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "error", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	return func() { _ = srv.Close() }, nil
}

// Exports returns the export worker's recorder, nil when metrics are off.
func (t *telemetry) Exports() *metrics.Exports {
	if t == nil {
		return nil
	}
	return t.exports
}
