package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/cardvault/cardvault/crypto"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/vault"
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
	// AuditCheckpointInterval is how often the audit lanes' heads are
	// checkpointed (0: the default, a minute).
	AuditCheckpointInterval time.Duration
	// CardHistoryRetention is how long a card replaced by an update is kept
	// sealed as a token version.
	CardHistoryRetention time.Duration
	// Import says how import jobs drive Stripe.
	Import importSettings
	// Export says how export jobs are worked.
	Export exportSettings
	// Limits are the request budgets: per-key rate, failed authentications
	// per address, requests in flight.
	Limits httpapi.Limits
	// DebugListen is the loopback address of the pprof listener; "" is off.
	DebugListen string
	// Console serves the operator console at /console.
	Console bool
	// EgressAllowLoopback lets outbound requests (forwards, webhooks) reach
	// loopback hosts, over plain http too: development and tests only.
	EgressAllowLoopback bool
	// ForwardRetention is how long forwarding records are kept.
	ForwardRetention time.Duration
	// ForwardPendingGrace is how long past its destination's timeout a
	// pending forwarding record waits before the sweeper marks it failed.
	ForwardPendingGrace time.Duration
	// Retention is how long finished webhook events, import jobs, export
	// jobs and key jobs are kept.
	Retention vault.Retention
	// MetricsListen is the address of the Prometheus /metrics listener;
	// "" is off.
	MetricsListen string
	// AuditFailureWindow is how long repeated refusals of one source are
	// counted in one audit row.
	AuditFailureWindow time.Duration
	// Operator names the person running a command-line operation; its
	// audit rows carry it (see bindOperator).
	Operator string
}

// actor returns the actor of a command-line operation on tenantID, named
// by the operator.
func (c config) actor(tenantID uuid.UUID) vault.Actor {
	return vault.OperatorNamed(tenantID, c.Operator)
}

// propagation is how long a rotation waits so that every replica has
// reloaded the keyset: two refresh intervals and a margin.
func (c config) propagation() time.Duration { return 2*c.KeyRefresh + time.Second }

// rawConfig holds the unparsed values bound to flags. Each command binds
// only the flags it reads; parse takes the default of every value left
// unbound, so `--help` lists what matters to that command.
type rawConfig struct {
	databaseURL, kekURI, listen, cvcTTL, logLevel, cryptoperiod, keyRefresh string
	keyCacheTTL, tlsCert, tlsKey, tlsClientCA                               string
	auditRetention                                                          string
	auditCheckpoint                                                         string
	debugListen, metricsListen                                              string
	console                                                                 string
	egressAllowLoopback, forwardRetention                                   string
	cardHistoryRetention                                                    string
	forwardPendingGrace                                                     string
	webhookRetention, importRetention, exportRetention, keyJobRetention     string
	imp                                                                     rawImport
	exp                                                                     rawExport
	// operator is --operator; operatorNeed says whether the command binds
	// it and whether it must be given (see bindOperator).
	operator     string
	operatorNeed operatorNeed
	// auditFailureWindow is --audit-failure-window (serving only).
	auditFailureWindow string
	limits             rawLimits
	// serving is set by bindServer: the import, limit and debug settings
	// are bound, so parse checks them.
	serving bool
	// fileImport is set by bindFileImport: the file import settings are
	// bound, so parse checks them.
	fileImport bool
}

// The defaults of the settings, used by a flag's default and by parse for a
// value the command did not bind.
const (
	defaultListen         = ":8080"
	defaultDevListen      = "127.0.0.1:8080"
	defaultCVCTTL         = "1h"
	defaultLogLevel       = "info"
	defaultCryptoperiod   = "365d"
	defaultAuditRetention = "400d"
	defaultCardHistory    = "30d"
	defaultKeyRefresh     = "2s"
	defaultKeyCacheTTL    = "1h"
	// defaultAuditCheckpoint is how often audit checkpoints are written.
	defaultAuditCheckpoint = "1m"
)

// bindDatabase binds --database-url to VAULT_DATABASE_URL.
func (r *rawConfig) bindDatabase(fs *pflag.FlagSet) {
	fs.StringVar(&r.databaseURL, "database-url", os.Getenv("VAULT_DATABASE_URL"), "PostgreSQL URL (env VAULT_DATABASE_URL)")
	hideDefault(fs, "database-url")
}

// hideDefault keeps flag name's value, taken from the environment, out of
// --help: it may hold a secret (a database password, a Stripe key), and
// help and configuration output never show one.
func hideDefault(fs *pflag.FlagSet, name string) {
	if f := fs.Lookup(name); f != nil {
		f.DefValue = ""
	}
}

// bindVault binds what every command that opens the vault reads: the
// database, the root KEK and the log level.
func (r *rawConfig) bindVault(fs *pflag.FlagSet) {
	r.bindDatabase(fs)
	fs.StringVar(&r.kekURI, "kek-uri", os.Getenv("VAULT_KEK_URI"), "root KEK: local://PATH, aws-kms://…, gcp-kms://…, hcvault://… (env VAULT_KEK_URI)")
	hideDefault(fs, "kek-uri")
	fs.StringVar(&r.logLevel, "log-level", envOr("VAULT_LOG_LEVEL", defaultLogLevel), "debug, info, warn or error (env VAULT_LOG_LEVEL)")
}

// operatorNeed says whether a command names its operator.
type operatorNeed int

// The operator needs of a command.
const (
	operatorUnbound  operatorNeed = iota // the command writes no operator audit rows
	operatorDefault                      // --operator, else user@host
	operatorRequired                     // --operator or VAULT_OPERATOR must be given
)

// bindOperator binds --operator to VAULT_OPERATOR: the person an operation
// at the command line is audited as. A key, tenant, API key, OpenPGP key or
// export operation requires it (PCI DSS 10.2.2: the audit trail names the
// person); a read-only command defaults to the OS user@host.
func (r *rawConfig) bindOperator(fs *pflag.FlagSet, need operatorNeed) {
	r.operatorNeed = need
	usage := "the person running this command, named in its audit rows; defaults to user@host (env VAULT_OPERATOR)"
	if need == operatorRequired {
		usage = "the person running this command, named in its audit rows; required (env VAULT_OPERATOR)"
	}
	fs.StringVar(&r.operator, "operator", os.Getenv("VAULT_OPERATOR"), usage)
}

// parseOperator returns the operator of the command, or an error naming the
// flag and the variable when the command requires one and none is given.
func (r *rawConfig) parseOperator() (string, error) {
	op := strings.TrimSpace(r.operator)
	switch {
	case op != "" && (len(op) > 200 || card.ContainsPAN(op)):
		return "", errors.New("--operator (VAULT_OPERATOR) must be a person's name of at most 200 characters, e.g. --operator alice")
	case op != "" || r.operatorNeed == operatorUnbound:
		return op, nil
	case r.operatorNeed == operatorRequired:
		return "", errors.New("this command changes keys, tenants, API keys or OpenPGP keys, or exports cards, and must name who runs it: " +
			"--operator NAME or VAULT_OPERATOR=NAME (PCI DSS 10.2.2), e.g. --operator alice")
	}
	return defaultOperator(), nil
}

// defaultOperator is the OS user@host running the process, "unknown" for
// a part that cannot be read.
func defaultOperator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "@" + host
}

// bindFileImport binds the file import settings of a command that stores
// and runs a file import outside serve (`import file`).
func (r *rawConfig) bindFileImport(fs *pflag.FlagSet) {
	r.fileImport = true
	r.imp.bindFile(fs)
}

// bindCryptoperiod binds --key-cryptoperiod, which flags overdue keys.
func (r *rawConfig) bindCryptoperiod(fs *pflag.FlagSet) {
	fs.StringVar(&r.cryptoperiod, "key-cryptoperiod", envOr("VAULT_KEY_CRYPTOPERIOD", defaultCryptoperiod), "how long a data key may stay in use, e.g. 365d (env VAULT_KEY_CRYPTOPERIOD)")
}

// bindKeyRefresh binds --key-refresh, which sets how long a rotation waits
// for the replicas.
func (r *rawConfig) bindKeyRefresh(fs *pflag.FlagSet) {
	fs.StringVar(&r.keyRefresh, "key-refresh", envOr("VAULT_KEY_REFRESH", defaultKeyRefresh), "how often to pick up keys rotated elsewhere (env VAULT_KEY_REFRESH)")
}

// bindEgress binds --egress-allow-loopback, which lets forwards and
// webhooks (and a destination or webhook URL being set) go to loopback hosts.
func (r *rawConfig) bindEgress(fs *pflag.FlagSet) {
	fs.StringVar(&r.egressAllowLoopback, "egress-allow-loopback", envOr("VAULT_EGRESS_ALLOW_LOOPBACK", "false"), "let forwards and webhooks reach loopback hosts, over plain http too: development and tests only (env VAULT_EGRESS_ALLOW_LOOPBACK)")
}

// bindServer binds every flag of a serving process (serve), each
// defaulting to its env variable.
func (r *rawConfig) bindServer(fs *pflag.FlagSet) { r.bindServing(fs, defaultListen) }

// bindServing binds the serving flags with listen as the default address.
func (r *rawConfig) bindServing(fs *pflag.FlagSet, listen string) {
	r.serving = true
	r.bindVault(fs)
	fs.StringVar(&r.listen, "listen", envOr("VAULT_LISTEN", listen), "listen address (env VAULT_LISTEN)")
	fs.StringVar(&r.cvcTTL, "cvc-ttl", envOr("VAULT_CVC_TTL", defaultCVCTTL), "how long an unrevealed CVC is kept (env VAULT_CVC_TTL)")
	r.bindCryptoperiod(fs)
	fs.StringVar(&r.auditRetention, "audit-retention", envOr("VAULT_AUDIT_RETENTION", defaultAuditRetention), "how long audit rows are kept, e.g. 400d (env VAULT_AUDIT_RETENTION)")
	r.bindKeyRefresh(fs)
	r.imp.bind(fs)
	r.exp.bind(fs)
	r.limits.bind(fs)
	fs.StringVar(&r.debugListen, "debug-listen", os.Getenv("VAULT_DEBUG_LISTEN"), "loopback host:port serving Go's pprof profiles under /debug/pprof/; off when empty (env VAULT_DEBUG_LISTEN)")
	fs.StringVar(&r.metricsListen, "metrics-listen", os.Getenv("VAULT_METRICS_LISTEN"), "host:port serving Prometheus metrics at GET /metrics, apart from the API; off when empty (env VAULT_METRICS_LISTEN)")
	r.bindEgress(fs)
	fs.StringVar(&r.forwardRetention, "forward-retention", envOr("VAULT_FORWARD_RETENTION", "30d"), "how long forwarding records are kept, e.g. 30d (env VAULT_FORWARD_RETENTION)")
	fs.StringVar(&r.forwardPendingGrace, "forward-pending-grace", envOr("VAULT_FORWARD_PENDING_GRACE", vault.DefaultForwardPendingGrace.String()),
		"how long past its destination's timeout a forward left pending by a stopped process waits before it is marked failed, outcome unknown; at least 30s (env VAULT_FORWARD_PENDING_GRACE)")
	fs.StringVar(&r.webhookRetention, "webhook-retention", envOr("VAULT_WEBHOOK_RETENTION", "30d"), "how long delivered or given-up webhook events and their delivery attempts are kept, e.g. 30d (env VAULT_WEBHOOK_RETENTION)")
	fs.StringVar(&r.importRetention, "import-retention", envOr("VAULT_IMPORT_RETENTION", "90d"), "how long finished import jobs and their items are kept, e.g. 90d (env VAULT_IMPORT_RETENTION)")
	fs.StringVar(&r.exportRetention, "export-retention", envOr("VAULT_EXPORT_RETENTION", "90d"), "how long finished export jobs and their items are kept, e.g. 90d (env VAULT_EXPORT_RETENTION)")
	fs.StringVar(&r.keyJobRetention, "key-job-retention", envOr("VAULT_KEY_JOB_RETENTION", "365d"), "how long finished key jobs are kept, e.g. 365d (env VAULT_KEY_JOB_RETENTION)")
	fs.StringVar(&r.console, "console", envOr("VAULT_CONSOLE", "on"), "serve the operator console at /console: on or off (env VAULT_CONSOLE)")
	fs.StringVar(&r.cardHistoryRetention, "card-history-retention", envOr("VAULT_CARD_HISTORY_RETENTION", defaultCardHistory),
		"how long a card replaced by an update is kept sealed and listed by GET /tokens/{id}/versions, e.g. 30d (env VAULT_CARD_HISTORY_RETENTION)")
	fs.StringVar(&r.auditFailureWindow, "audit-failure-window", envOr("VAULT_AUDIT_FAILURE_WINDOW", "10s"),
		"how long repeated refused requests of one source (address, route, reason, key) share one audit row with their count (env VAULT_AUDIT_FAILURE_WINDOW)")
	fs.StringVar(&r.keyCacheTTL, "key-cache-ttl", envOr("VAULT_KEY_CACHE_TTL", defaultKeyCacheTTL), "how long unwrapped tenant keys serve before the root KEK unwraps them again (env VAULT_KEY_CACHE_TTL)")
	fs.StringVar(&r.auditCheckpoint, "audit-checkpoint-interval", envOr("VAULT_AUDIT_CHECKPOINT_INTERVAL", defaultAuditCheckpoint), "how often the audit chains' heads are checkpointed with a MAC, e.g. 1m (env VAULT_AUDIT_CHECKPOINT_INTERVAL)")
}

// parseDays parses a Go duration or a whole number of days such as "365d".
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		return time.Duration(days) * 24 * time.Hour, err
	}
	return time.ParseDuration(s)
}

// envOr returns the environment variable name, or def when it is empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// orDefault returns v, or def when v is empty (a setting the command did
// not bind).
func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// errNoDatabase says that the database URL is missing and how to get one.
func errNoDatabase() error {
	return errors.New("VAULT_DATABASE_URL (--database-url) is required: export VAULT_DATABASE_URL=postgres://USER@HOST/DB " +
		"(`make dev` prints one for its private PostgreSQL)")
}

// parse validates every value and returns all problems at once, so a bad
// deployment stops at startup with one clear message.
func (r *rawConfig) parse(needDB bool) (config, error) {
	cfg := config{DatabaseURL: strings.TrimSpace(r.databaseURL), KEKURI: strings.TrimSpace(r.kekURI), Listen: orDefault(r.listen, defaultListen)}
	var errs []error
	if needDB && cfg.DatabaseURL == "" {
		errs = append(errs, errNoDatabase())
	}
	if cfg.KEKURI == "" {
		errs = append(errs, errors.New("VAULT_KEK_URI (--kek-uri) is required, e.g. local:///abs/path/kek.json "+
			"(`cardvault kek create --out kek.json` makes one for development)"))
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		errs = append(errs, fmt.Errorf("VAULT_LISTEN %q is not host:port", cfg.Listen))
	}
	errs = append(errs, r.parseDurations(&cfg)...)
	var opErr error
	if cfg.Operator, opErr = r.parseOperator(); opErr != nil {
		errs = append(errs, opErr)
	}
	if r.serving {
		errs = append(errs, r.parseServing(&cfg)...)
	} else if r.fileImport {
		errs = append(errs, r.imp.parseFile(&cfg.Import)...)
	}
	var err error
	if cfg.EgressAllowLoopback, err = strconv.ParseBool(orDefault(r.egressAllowLoopback, "false")); err != nil {
		errs = append(errs, fmt.Errorf("VAULT_EGRESS_ALLOW_LOOPBACK %q must be true or false", r.egressAllowLoopback))
	}
	if cfg.MetricsListen, err = parseMetricsListen(r.metricsListen); err != nil {
		errs = append(errs, err)
	}
	var tlsErrs []error
	cfg.TLS, tlsErrs = r.parseTLS()
	errs = append(errs, tlsErrs...)
	if err := cfg.LogLevel.UnmarshalText([]byte(orDefault(r.logLevel, defaultLogLevel))); err != nil {
		errs = append(errs, fmt.Errorf("VAULT_LOG_LEVEL %q must be debug, info, warn or error", r.logLevel))
	}
	return cfg, errors.Join(errs...)
}

// parseDurations sets cfg's durations and returns every problem with them.
func (r *rawConfig) parseDurations(cfg *config) []error {
	var errs []error
	var err error
	cvcTTL, cryptoperiod, retention := orDefault(r.cvcTTL, defaultCVCTTL), orDefault(r.cryptoperiod, defaultCryptoperiod), orDefault(r.auditRetention, defaultAuditRetention)
	keyRefresh, keyCacheTTL := orDefault(r.keyRefresh, defaultKeyRefresh), orDefault(r.keyCacheTTL, defaultKeyCacheTTL)
	if cfg.CVCTTL, err = time.ParseDuration(cvcTTL); err != nil || cfg.CVCTTL <= 0 || cfg.CVCTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_CVC_TTL %q must be a duration between 1s and 24h, e.g. 1h", cvcTTL))
	}
	if cfg.Cryptoperiod, err = parseDays(cryptoperiod); err != nil || cfg.Cryptoperiod < 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_KEY_CRYPTOPERIOD %q must be at least 1d, e.g. 365d", cryptoperiod))
	}
	if cfg.AuditRetention, err = parseDays(retention); err != nil || cfg.AuditRetention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_AUDIT_RETENTION %q must be at least 1d, e.g. 400d", retention))
	}
	if cfg.KeyRefresh, err = time.ParseDuration(keyRefresh); err != nil || cfg.KeyRefresh < 100*time.Millisecond || cfg.KeyRefresh > time.Minute {
		errs = append(errs, fmt.Errorf("VAULT_KEY_REFRESH %q must be a duration between 100ms and 1m", keyRefresh))
	}
	if cfg.KeyCacheTTL, err = time.ParseDuration(keyCacheTTL); err != nil || cfg.KeyCacheTTL < time.Second || cfg.KeyCacheTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_KEY_CACHE_TTL %q must be a duration between 1s and 24h, e.g. 1h", keyCacheTTL))
	}
	checkpoint := orDefault(r.auditCheckpoint, defaultAuditCheckpoint)
	if cfg.AuditCheckpointInterval, err = time.ParseDuration(checkpoint); err != nil || cfg.AuditCheckpointInterval < time.Second || cfg.AuditCheckpointInterval > 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_AUDIT_CHECKPOINT_INTERVAL %q must be a duration between 1s and 24h, e.g. 1m", checkpoint))
	}
	return errs
}

// parseServing sets the import, limit and debug settings of a serving
// process and returns every problem with them.
func (r *rawConfig) parseServing(cfg *config) []error {
	var errs, more []error
	cfg.Import, errs = r.imp.parse()
	cfg.Limits, more = r.limits.parse()
	errs = append(errs, more...)
	cfg.Export, more = r.exp.parse()
	errs = append(errs, more...)
	var err error
	if cfg.DebugListen, err = parseDebugListen(r.debugListen); err != nil {
		errs = append(errs, err)
	}
	switch r.console {
	case "on", "off":
		cfg.Console = r.console == "on"
	default:
		errs = append(errs, fmt.Errorf("VAULT_CONSOLE %q must be on or off", r.console))
	}
	forwardRetention := orDefault(r.forwardRetention, "30d")
	if cfg.ForwardRetention, err = parseDays(forwardRetention); err != nil || cfg.ForwardRetention < time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_FORWARD_RETENTION %q must be at least 1h, e.g. 30d", forwardRetention))
	}
	grace := orDefault(r.forwardPendingGrace, vault.DefaultForwardPendingGrace.String())
	if cfg.ForwardPendingGrace, err = time.ParseDuration(grace); err != nil || cfg.ForwardPendingGrace < vault.MinForwardPendingGrace {
		errs = append(errs, fmt.Errorf("VAULT_FORWARD_PENDING_GRACE %q must be a duration of at least 30s, e.g. 2m", grace))
	}
	window := orDefault(r.auditFailureWindow, "10s")
	if cfg.AuditFailureWindow, err = time.ParseDuration(window); err != nil || cfg.AuditFailureWindow < 100*time.Millisecond || cfg.AuditFailureWindow > 5*time.Minute {
		errs = append(errs, fmt.Errorf("VAULT_AUDIT_FAILURE_WINDOW %q must be a duration between 100ms and 5m, e.g. 10s", window))
	}
	for _, x := range []struct {
		env, raw, def string
		out           *time.Duration
	}{
		{"VAULT_WEBHOOK_RETENTION", r.webhookRetention, "30d", &cfg.Retention.Webhooks},
		{"VAULT_IMPORT_RETENTION", r.importRetention, "90d", &cfg.Retention.Imports},
		{"VAULT_EXPORT_RETENTION", r.exportRetention, "90d", &cfg.Retention.Exports},
		{"VAULT_KEY_JOB_RETENTION", r.keyJobRetention, "365d", &cfg.Retention.KeyJobs},
	} {
		v := orDefault(x.raw, x.def)
		if *x.out, err = parseDays(v); err != nil || *x.out < time.Hour {
			errs = append(errs, fmt.Errorf("%s %q must be at least 1h, e.g. %s", x.env, v, x.def))
		}
	}
	history := orDefault(r.cardHistoryRetention, defaultCardHistory)
	if cfg.CardHistoryRetention, err = parseDays(history); err != nil || cfg.CardHistoryRetention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("VAULT_CARD_HISTORY_RETENTION %q must be at least 1d, e.g. 30d", history))
	}
	return errs
}

// newLogger returns the process logger: JSON on stderr, with every string
// passed through the PAN mask as a last line of defence.
func newLogger(level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	return slog.New(card.NewRedactingHandler(h))
}

// kekNotice warns, once per process, that the root KEK is a local keyset
// file: in words on a terminal, as a structured log line otherwise.
type kekNotice struct {
	once  sync.Once
	human io.Writer // the terminal to write to; nil: log instead
}

// newKEKNotice returns a notice that writes words to w when w is a
// terminal.
func newKEKNotice(w io.Writer) *kekNotice {
	if isTerminal(w) {
		return &kekNotice{human: w}
	}
	return &kekNotice{}
}

// warn says that uri is a local keyset file, the first time only; other
// URIs need no warning.
func (n *kekNotice) warn(log *slog.Logger, uri string) {
	if !crypto.IsLocalKEK(uri) {
		return
	}
	n.once.Do(func() {
		if n.human != nil {
			fmt.Fprintf(n.human, "warning: the root KEK is a local key file (%s): fine for development and tests, "+
				"not for production, where VAULT_KEK_URI names a KMS key (aws-kms://, gcp-kms:// or hcvault://)\n", crypto.RedactKEKURI(uri))
			return
		}
		log.Warn("the root KEK is a local keyset file: fine for development and tests, not for production; use aws-kms://, gcp-kms:// or hcvault://",
			"kek_uri", crypto.RedactKEKURI(uri))
	})
}

// kekNoticeKey is the context key of the process's kekNotice.
type kekNoticeKey struct{}

// withKEKNotice returns ctx carrying n.
func withKEKNotice(ctx context.Context, n *kekNotice) context.Context {
	return context.WithValue(ctx, kekNoticeKey{}, n)
}

// kekNoticeFrom returns the notice ctx carries, or a fresh one that logs
// (a caller outside the command tree, such as the benchmark).
func kekNoticeFrom(ctx context.Context) *kekNotice {
	if n, ok := ctx.Value(kekNoticeKey{}).(*kekNotice); ok {
		return n
	}
	return &kekNotice{}
}

// isTerminal reports whether w is a terminal (a person is reading).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
