package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault/card"
)

// config is everything the server needs, read once from the environment and
// flags (flags win) and validated before anything starts.
type config struct {
	DatabaseURL string
	KEKURI      string
	Listen      string
	CVCTTL      time.Duration
	LogLevel    slog.Level
	// Cryptoperiod is how long a data key may stay in use (PCI DSS 3.6.4).
	Cryptoperiod time.Duration
	// KeyRefresh is how often a process looks for keysets rotated elsewhere.
	KeyRefresh time.Duration
	// KeyCacheTTL is how long unwrapped tenant keys serve before the root
	// KEK must unwrap them again.
	KeyCacheTTL time.Duration
	// TLS names the certificate files of HTTPS (serve only); none means HTTP.
	TLS tlsFiles
	// AuditRetention is how long audit rows are kept before pruning.
	AuditRetention time.Duration
	// Import says how import jobs drive Stripe.
	Import importSettings
	// Limits are the request budgets: per-key rate, failed authentications
	// per address, requests in flight.
	Limits httpapi.Limits
	// DebugListen is the loopback address of the pprof listener; "" is off.
	DebugListen string
	// MetricsListen is the address of the Prometheus /metrics listener;
	// "" is off.
	MetricsListen string
}

// propagation is how long a rotation waits so that every replica has
// reloaded the keyset: two refresh intervals and a margin.
func (c config) propagation() time.Duration { return 2*c.KeyRefresh + time.Second }

// rawConfig holds the unparsed values bound to flags.
type rawConfig struct {
	databaseURL, kekURI, listen, cvcTTL, logLevel, cryptoperiod, keyRefresh string
	keyCacheTTL, tlsCert, tlsKey, tlsClientCA                               string
	auditRetention                                                          string
	debugListen, metricsListen                                              string
	imp                                                                     rawImport
	limits                                                                  rawLimits
}

// bindDatabase binds --database-url to VAULT_DATABASE_URL.
func (r *rawConfig) bindDatabase(fs *pflag.FlagSet) {
	fs.StringVar(&r.databaseURL, "database-url", os.Getenv("VAULT_DATABASE_URL"), "PostgreSQL URL (env VAULT_DATABASE_URL)")
}

// bindServer binds the server's flags, each defaulting to its env variable.
func (r *rawConfig) bindServer(fs *pflag.FlagSet) {
	r.bindDatabase(fs)
	fs.StringVar(&r.kekURI, "kek-uri", os.Getenv("VAULT_KEK_URI"), "root KEK: local://PATH, aws-kms://…, gcp-kms://…, hcvault://… (env VAULT_KEK_URI)")
	fs.StringVar(&r.listen, "listen", envOr("VAULT_LISTEN", ":8080"), "listen address (env VAULT_LISTEN)")
	fs.StringVar(&r.cvcTTL, "cvc-ttl", envOr("VAULT_CVC_TTL", "1h"), "how long an unrevealed CVC is kept (env VAULT_CVC_TTL)")
	fs.StringVar(&r.logLevel, "log-level", envOr("VAULT_LOG_LEVEL", "info"), "debug, info, warn or error (env VAULT_LOG_LEVEL)")
	fs.StringVar(&r.cryptoperiod, "key-cryptoperiod", envOr("VAULT_KEY_CRYPTOPERIOD", "365d"), "how long a data key may stay in use, e.g. 365d (env VAULT_KEY_CRYPTOPERIOD)")
	fs.StringVar(&r.auditRetention, "audit-retention", envOr("VAULT_AUDIT_RETENTION", "400d"), "how long audit rows are kept, e.g. 400d (env VAULT_AUDIT_RETENTION)")
	fs.StringVar(&r.keyRefresh, "key-refresh", envOr("VAULT_KEY_REFRESH", "2s"), "how often to pick up keys rotated elsewhere (env VAULT_KEY_REFRESH)")
	r.imp.bind(fs)
	r.limits.bind(fs)
	fs.StringVar(&r.debugListen, "debug-listen", os.Getenv("VAULT_DEBUG_LISTEN"), "loopback host:port serving Go's pprof profiles under /debug/pprof/; off when empty (env VAULT_DEBUG_LISTEN)")
	fs.StringVar(&r.metricsListen, "metrics-listen", os.Getenv("VAULT_METRICS_LISTEN"), "host:port serving Prometheus metrics at GET /metrics, apart from the API; off when empty (env VAULT_METRICS_LISTEN)")
	fs.StringVar(&r.keyCacheTTL, "key-cache-ttl", envOr("VAULT_KEY_CACHE_TTL", "1h"), "how long unwrapped tenant keys serve before the root KEK unwraps them again (env VAULT_KEY_CACHE_TTL)")
}

// parseDays parses a Go duration or a whole number of days such as "365d".
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		return time.Duration(days) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}

// parseID parses an id given on the command line; the error names what the
// id should have been so the operator knows which argument is wrong.
func parseID(what, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%q is not a %s id", s, what)
	}
	return id, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parse validates every value and returns all problems at once, so a bad
// deployment stops at startup with one clear message.
func (r *rawConfig) parse(needDB bool) (config, error) {
	var cfg config
	var errs []error
	cfg.DatabaseURL, cfg.KEKURI, cfg.Listen = strings.TrimSpace(r.databaseURL), strings.TrimSpace(r.kekURI), r.listen
	if needDB && cfg.DatabaseURL == "" {
		errs = append(errs, errors.New("VAULT_DATABASE_URL (--database-url) is required"))
	}
	if cfg.KEKURI == "" {
		errs = append(errs, errors.New("VAULT_KEK_URI (--kek-uri) is required, e.g. local:///abs/path/kek.json"))
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		errs = append(errs, fmt.Errorf("VAULT_LISTEN %q is not host:port", cfg.Listen))
	}
	var err error
	if cfg.CVCTTL, err = time.ParseDuration(r.cvcTTL); err != nil || cfg.CVCTTL <= 0 || cfg.CVCTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_CVC_TTL %q must be a duration between 1s and 24h, e.g. 1h", r.cvcTTL))
	}
	if cfg.Cryptoperiod, err = parseDays(r.cryptoperiod); err != nil || cfg.Cryptoperiod < 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_KEY_CRYPTOPERIOD %q must be at least 1d, e.g. 365d", r.cryptoperiod))
	}
	if cfg.AuditRetention, err = parseDays(r.auditRetention); err != nil || cfg.AuditRetention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_AUDIT_RETENTION %q must be at least 1d, e.g. 400d", r.auditRetention))
	}
	if cfg.KeyRefresh, err = time.ParseDuration(r.keyRefresh); err != nil || cfg.KeyRefresh < 100*time.Millisecond || cfg.KeyRefresh > time.Minute {
		errs = append(errs, fmt.Errorf("VAULT_KEY_REFRESH %q must be a duration between 100ms and 1m", r.keyRefresh))
	}
	if cfg.KeyCacheTTL, err = time.ParseDuration(r.keyCacheTTL); err != nil || cfg.KeyCacheTTL < time.Second || cfg.KeyCacheTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_KEY_CACHE_TTL %q must be a duration between 1s and 24h, e.g. 1h", r.keyCacheTTL))
	}
	var importErrs []error
	cfg.Import, importErrs = r.imp.parse()
	errs = append(errs, importErrs...)
	var limitErrs []error
	cfg.Limits, limitErrs = r.limits.parse()
	errs = append(errs, limitErrs...)
	if cfg.DebugListen, err = parseDebugListen(r.debugListen); err != nil {
		errs = append(errs, err)
	}
	if cfg.MetricsListen, err = parseMetricsListen(r.metricsListen); err != nil {
		errs = append(errs, err)
	}
	var tlsErrs []error
	cfg.TLS, tlsErrs = r.parseTLS()
	errs = append(errs, tlsErrs...)
	if err := cfg.LogLevel.UnmarshalText([]byte(r.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("VAULT_LOG_LEVEL %q must be debug, info, warn or error", r.logLevel))
	}
	return cfg, errors.Join(errs...)
}

// newLogger returns the process logger: JSON on stderr, with every string
// passed through the PAN mask as a last line of defence.
func newLogger(level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	return slog.New(card.NewRedactingHandler(h))
}

// warnIfLocalKEK warns that a local KEK file is for development only.
func warnIfLocalKEK(log *slog.Logger, uri string) {
	if crypto.IsLocalKEK(uri) {
		log.Warn("the root KEK is a local keyset file: fine for development and tests, not for production; use aws-kms://, gcp-kms:// or hcvault://",
			"kek_uri", crypto.RedactKEKURI(uri))
	}
}
