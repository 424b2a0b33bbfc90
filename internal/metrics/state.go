package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State is what the database says at scrape time: totals over every tenant,
// never one tenant's figures.
type State struct {
	// Tenants is how many tenants are not destroyed.
	Tenants int64
	// OutboxPending is how many webhook events are neither delivered nor
	// given up, and OutboxOldest the age of the oldest of them (0 when
	// none).
	OutboxPending int64
	OutboxOldest  time.Duration
	// AuditUnchained is how many audit rows the chainer has not linked yet,
	// and AuditOldestUnchained the age of the oldest of them (0 when none).
	AuditUnchained       int64
	AuditOldestUnchained time.Duration
	// ImportJobs counts import jobs by status (preparing, running, finished,
	// aborted, failed); ImportActiveItems and ImportActiveSettled add up the
	// items found and settled (succeeded, failed or skipped) of the
	// preparing and running jobs.
	ImportJobs          map[string]int64
	ImportActiveItems   int64
	ImportActiveSettled int64
	// KeyJobs counts re-encryption jobs by status (pending, running,
	// finished, failed); ReencryptTotal and ReencryptDone add up the tokens
	// to re-seal and re-sealed of the pending and running ones.
	KeyJobs        map[string]int64
	ReencryptTotal int64
	ReencryptDone  int64
	// DataKeyMaxAge is the age of the oldest data key still in use
	// (primary or active) of any tenant, and DataKeysOverdue how many data
	// keys in use are older than the cryptoperiod asked for: the keys the
	// key report flags overdue.
	DataKeyMaxAge   time.Duration
	DataKeysOverdue int64
	// MismatchedTenants is how many tenants' keys the root KEK failed to
	// open at their last load although it answered (kek_mismatch).
	MismatchedTenants int64
}

// StateSource reads the State; vault/postgres.Service is one.
type StateSource interface {
	// MetricsState returns the State, counting as overdue the data keys in
	// use older than cryptoperiod. It returns an error when the database fails.
	MetricsState(ctx context.Context, cryptoperiod time.Duration) (State, error)
}

// The label values of the State's maps; a key outside them is not exported.
var (
	importStatuses = []string{"preparing", "running", "finished", "aborted", "failed"}
	keyJobStatuses = []string{"pending", "running", "finished", "failed"}
)

// StateOptions tune a state collector.
type StateOptions struct {
	// Cryptoperiod is how long a data key may stay in use (exported as
	// cardvault_key_cryptoperiod_seconds).
	Cryptoperiod time.Duration
	// Timeout bounds one read of the State (DefaultStateTimeout when 0).
	Timeout time.Duration
	// CacheFor is how long a read State answers scrapes (DefaultStateCache
	// when 0), so that several Prometheus servers cost one query.
	CacheFor time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// The state collector's defaults.
const (
	DefaultStateTimeout = 2 * time.Second
	DefaultStateCache   = 5 * time.Second
)

// StateCollector exports the State, read from its source at scrape time
// with a timeout and cached for a few seconds. When the read fails it
// exports cardvault_state_up 0 and nothing of the State.
type StateCollector struct {
	src  StateSource
	opts StateOptions
	desc stateDescs

	mu      sync.Mutex
	read    time.Time // when st was read; zero before the first read
	st      State
	err     error
	elapsed time.Duration
}

// NewStateCollector returns the collector of src's State. Register it on
// the process's registry.
func NewStateCollector(src StateSource, opts StateOptions) *StateCollector {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultStateTimeout
	}
	if opts.CacheFor <= 0 {
		opts.CacheFor = DefaultStateCache
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &StateCollector{src: src, opts: opts, desc: newStateDescs()}
}

// Describe sends the descriptors of every metric the collector exports.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) { c.desc.describe(ch) }

// Collect reads the State (or takes the cached one) and sends its metrics.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	st, elapsed, err := c.state()
	d := &c.desc
	ch <- prometheus.MustNewConstMetric(d.queryDuration, prometheus.GaugeValue, elapsed.Seconds())
	ch <- prometheus.MustNewConstMetric(d.cryptoperiod, prometheus.GaugeValue, c.opts.Cryptoperiod.Seconds())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(d.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(d.up, prometheus.GaugeValue, 1)
	d.collect(ch, st)
}

// state returns the cached State while it is fresh, otherwise reads it.
// Concurrent scrapes wait for one read.
func (c *StateCollector) state() (State, time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if !c.read.IsZero() && now.Sub(c.read) < c.opts.CacheFor {
		return c.st, c.elapsed, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	start := time.Now()
	c.st, c.err = c.src.MetricsState(ctx, c.opts.Cryptoperiod)
	c.elapsed, c.read = time.Since(start), now
	return c.st, c.elapsed, c.err
}

// stateDescs are the descriptors of the state collector's metrics.
type stateDescs struct {
	up, queryDuration, cryptoperiod        *prometheus.Desc
	tenants, outboxPending, outboxOldest   *prometheus.Desc
	auditUnchained, auditOldest            *prometheus.Desc
	importJobs, importItems, importSettled *prometheus.Desc
	keyJobs, reencryptTotal, reencryptDone *prometheus.Desc
	dataKeyAge, keysOverdue, mismatched    *prometheus.Desc
}

func gaugeDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

func newStateDescs() stateDescs {
	return stateDescs{
		up:             gaugeDesc("state_up", "1 when the last scrape-time read of the vault's state from the database succeeded, else 0 (and the state metrics are absent)."),
		queryDuration:  gaugeDesc("state_query_duration_seconds", "How long the last scrape-time read of the vault's state took."),
		cryptoperiod:   gaugeDesc("key_cryptoperiod_seconds", "How long a data key may stay in use before it is overdue for rotation (VAULT_KEY_CRYPTOPERIOD)."),
		tenants:        gaugeDesc("tenants", "Tenants not destroyed."),
		outboxPending:  gaugeDesc("webhook_outbox_pending", "Webhook events neither delivered nor given up."),
		outboxOldest:   gaugeDesc("webhook_outbox_oldest_pending_age_seconds", "Age of the oldest webhook event neither delivered nor given up; 0 when none."),
		auditUnchained: gaugeDesc("audit_unchained_rows", "Audit rows not yet linked into their tamper-evident chain."),
		auditOldest:    gaugeDesc("audit_oldest_unchained_age_seconds", "Age of the oldest audit row not yet linked into its chain; 0 when none."),
		importJobs:     gaugeDesc("import_jobs", "Import jobs by status.", "status"),
		importItems:    gaugeDesc("import_active_items", "Items found by the preparing and running import jobs."),
		importSettled:  gaugeDesc("import_active_items_settled", "Items of the preparing and running import jobs that succeeded, failed or were skipped."),
		keyJobs:        gaugeDesc("key_jobs", "Re-encryption jobs by status.", "status"),
		reencryptTotal: gaugeDesc("reencrypt_active_tokens", "Tokens the pending and running re-encryption jobs have to re-seal."),
		reencryptDone:  gaugeDesc("reencrypt_active_tokens_done", "Tokens the pending and running re-encryption jobs have re-sealed."),
		dataKeyAge:     gaugeDesc("data_key_max_age_seconds", "Age of the oldest data key still in use (primary or active) of any tenant."),
		keysOverdue:    gaugeDesc("data_keys_overdue", "Data keys in use (primary or active) older than the cryptoperiod: due for rotation, re-encryption and retirement."),
		mismatched:     gaugeDesc("root_kek_mismatched_tenants", "Tenants whose keys the root KEK answered for but could not open at their last load (kek_mismatch: the vault runs with the wrong KEK)."),
	}
}

func (d *stateDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.up, d.queryDuration, d.cryptoperiod, d.tenants, d.outboxPending, d.outboxOldest,
		d.auditUnchained, d.auditOldest, d.importJobs, d.importItems, d.importSettled, d.keyJobs, d.reencryptTotal,
		d.reencryptDone, d.dataKeyAge, d.keysOverdue, d.mismatched} {
		ch <- x
	}
}

// collect sends st's metrics.
func (d *stateDescs) collect(ch chan<- prometheus.Metric, st State) {
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	gauge(d.tenants, float64(st.Tenants))
	gauge(d.outboxPending, float64(st.OutboxPending))
	gauge(d.outboxOldest, st.OutboxOldest.Seconds())
	gauge(d.auditUnchained, float64(st.AuditUnchained))
	gauge(d.auditOldest, st.AuditOldestUnchained.Seconds())
	for _, s := range importStatuses {
		gauge(d.importJobs, float64(st.ImportJobs[s]), s)
	}
	gauge(d.importItems, float64(st.ImportActiveItems))
	gauge(d.importSettled, float64(st.ImportActiveSettled))
	for _, s := range keyJobStatuses {
		gauge(d.keyJobs, float64(st.KeyJobs[s]), s)
	}
	gauge(d.reencryptTotal, float64(st.ReencryptTotal))
	gauge(d.reencryptDone, float64(st.ReencryptDone))
	gauge(d.dataKeyAge, st.DataKeyMaxAge.Seconds())
	gauge(d.keysOverdue, float64(st.DataKeysOverdue))
	gauge(d.mismatched, float64(st.MismatchedTenants))
}
