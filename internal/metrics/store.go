package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Batch names a group commit of the store: the concurrent requests of one
// kind written in one statement and one commit.
type Batch string

// The store's group commits.
const (
	BatchTokenCreate   Batch = "token_create"   // new tokens
	BatchTokenRead     Batch = "token_read"     // masked reads and their audit rows
	BatchTokenReveal   Batch = "token_reveal"   // detokenizations and their audit rows
	BatchImportAttempt Batch = "import_attempt" // import forwarders' attempts
	// BatchForwardPrepare: forwards' audit rows, CVC consumptions and
	// pending records, committed before anything is sent
	BatchForwardPrepare Batch = "forward_prepare"
	BatchForwardOutcome Batch = "forward_outcome" // forwards' outcomes
)

var batches = []Batch{BatchTokenCreate, BatchTokenRead, BatchTokenReveal, BatchImportAttempt, BatchForwardPrepare, BatchForwardOutcome}

// batchBuckets bound the group-commit batch size histogram.
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// kekBuckets bound the root KEK call latency histogram, in seconds: a local
// keyset answers in microseconds, a cloud KMS in tens of milliseconds.
var kekBuckets = []float64{.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Store records the PostgreSQL implementation's inner workings: group
// commit batch sizes, the tenant key cache, root KEK calls, CVC sweeps and
// re-encryption. A nil *Store records nothing.
type Store struct {
	batchSizes  map[Batch]prometheus.Observer
	cacheHit    prometheus.Counter
	cacheMiss   prometheus.Counter
	kek         kekSeries
	kekUp       prometheus.Gauge
	sweepOK     prometheus.Counter
	sweepFailed prometheus.Counter
	cvcsPurged  prometheus.Counter
	reencrypted prometheus.Counter
}

// NewStore returns a Store recorder registered on reg. It panics when its
// metrics are registered on reg already.
func NewStore(reg prometheus.Registerer) *Store {
	sizes := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "group_commit_batch_size",
		Help: "Requests written per group commit (one statement, one commit), by batch.", Buckets: batchBuckets}, []string{"batch"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tenant_key_cache_lookups_total",
		Help: "Lookups of a tenant's unwrapped keys in the in-memory cache: hit, or miss (loaded from the database and unwrapped by the root KEK)."},
		[]string{"result"})
	sweeps := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "cvc_sweeps_total",
		Help: "Passes of the sweeper that destroys expired CVCs, by outcome."}, []string{"outcome"})
	s := &Store{batchSizes: map[Batch]prometheus.Observer{}, cacheHit: cache.WithLabelValues("hit"), cacheMiss: cache.WithLabelValues("miss"),
		kek: newKEKSeries(),
		kekUp: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "root_kek_up",
			Help: "1 unless the root KEK failed or did not answer at its last call (0); a KEK that answers but cannot open a tenant's keys counts as up (see cardvault_root_kek_mismatched_tenants)."}),
		sweepOK: sweeps.WithLabelValues("ok"), sweepFailed: sweeps.WithLabelValues("error"),
		cvcsPurged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "cvcs_purged_total",
			Help: "CVCs destroyed because their time to live passed without a reveal."}),
		reencrypted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "reencrypted_tokens_total",
			Help: "Tokens re-sealed under their tenant's primary data key by re-encryption jobs in this process."}),
	}
	for _, b := range batches {
		s.batchSizes[b] = sizes.WithLabelValues(string(b))
	}
	s.kekUp.Set(1)
	mustRegister(reg, sizes, cache, sweeps, s.kekUp, s.cvcsPurged, s.reencrypted)
	s.kek.register(reg)
	return s
}

// BatchSizes returns the recorder of the sizes of batch's group commits;
// its zero value (what a nil *Store or an unknown batch gives) records
// nothing.
func (s *Store) BatchSizes(b Batch) Sizes {
	if s == nil {
		return Sizes{}
	}
	return Sizes{o: s.batchSizes[b]}
}

// Sizes records sizes, such as the requests of a group commit. Its zero
// value records nothing.
type Sizes struct{ o prometheus.Observer }

// Observe records one size.
func (z Sizes) Observe(n int) {
	if z.o != nil {
		z.o.Observe(float64(n))
	}
}

// KeyCacheHit counts a tenant key lookup the cache answered.
func (s *Store) KeyCacheHit() {
	if s != nil {
		s.cacheHit.Inc()
	}
}

// KeyCacheMiss counts a tenant key lookup that had to load the keys.
func (s *Store) KeyCacheMiss() {
	if s != nil {
		s.cacheMiss.Inc()
	}
}

// KEKAvailable records whether the root KEK answered its last call: false
// when it failed or did not answer, true when it worked (even if it could
// not open a keyset wrapped by another KEK).
func (s *Store) KEKAvailable(ok bool) {
	if s == nil {
		return
	}
	if ok {
		s.kekUp.Set(1)
		return
	}
	s.kekUp.Set(0)
}

// CVCSweep records one pass of the CVC sweeper that destroyed purged CVCs
// and ended with err.
func (s *Store) CVCSweep(purged int64, err error) {
	if s == nil {
		return
	}
	s.cvcsPurged.Add(float64(purged))
	if err != nil {
		s.sweepFailed.Inc()
		return
	}
	s.sweepOK.Inc()
}

// Reencrypted counts n tokens re-sealed under the primary key.
func (s *Store) Reencrypted(n int) {
	if s != nil && n > 0 {
		s.reencrypted.Add(float64(n))
	}
}

// AEAD is the root KEK's interface (tink.AEAD's method set).
type AEAD interface {
	Encrypt(plaintext, associatedData []byte) ([]byte, error)
	Decrypt(ciphertext, associatedData []byte) ([]byte, error)
}

// CountKEK returns kek counting and timing each call it makes; kek itself
// for a nil *Store.
func (s *Store) CountKEK(kek AEAD) AEAD {
	if s == nil || kek == nil {
		return kek
	}
	return countedKEK{kek: kek, s: &s.kek}
}

// kekSeries are the root KEK call counters and latency, by operation.
type kekSeries struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// resolved children: [encrypt, decrypt] × [ok, error], and latency.
	ok, failed [2]prometheus.Counter
	latency    [2]prometheus.Observer
}

func newKEKSeries() kekSeries {
	k := kekSeries{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "root_kek_calls_total",
			Help: "Calls to the root KEK (a KMS in production), by operation and outcome; made only to wrap or unwrap tenant keysets, never per card."},
			[]string{"op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "root_kek_call_duration_seconds",
			Help: "Latency of root KEK calls, by operation.", Buckets: kekBuckets}, []string{"op"}),
	}
	for i, op := range []string{"encrypt", "decrypt"} {
		k.ok[i], k.failed[i] = k.calls.WithLabelValues(op, "ok"), k.calls.WithLabelValues(op, "error")
		k.latency[i] = k.duration.WithLabelValues(op)
	}
	return k
}

func (k *kekSeries) register(reg prometheus.Registerer) { mustRegister(reg, k.calls, k.duration) }

// observe records one call of op (0 encrypt, 1 decrypt) begun at start.
func (k *kekSeries) observe(op int, start time.Time, err error) {
	k.latency[op].Observe(time.Since(start).Seconds())
	if err != nil {
		k.failed[op].Inc()
		return
	}
	k.ok[op].Inc()
}

// countedKEK is a root KEK whose calls are counted.
type countedKEK struct {
	kek AEAD
	s   *kekSeries
}

// Encrypt encrypts with the KEK; it returns the KEK's error.
func (c countedKEK) Encrypt(pt, ad []byte) ([]byte, error) {
	start := time.Now()
	ct, err := c.kek.Encrypt(pt, ad)
	c.s.observe(0, start, err)
	return ct, err
}

// Decrypt decrypts with the KEK; it returns the KEK's error.
func (c countedKEK) Decrypt(ct, ad []byte) ([]byte, error) {
	start := time.Now()
	pt, err := c.kek.Decrypt(ct, ad)
	c.s.observe(1, start, err)
	return pt, err
}
