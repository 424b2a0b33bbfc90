package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolStats is a snapshot of the database connection pool (pgxpool's Stat).
type PoolStats struct {
	Acquired, Idle, Constructing, Max int32
	// Acquires counts connections handed out; WaitedAcquires those that had
	// to wait for one to be released or made, for WaitTime in all;
	// CanceledAcquires those given up before a connection came.
	Acquires, WaitedAcquires, CanceledAcquires int64
	WaitTime                                   time.Duration
}

// PoolCollector exports the database pool's connections and waits, read
// from stats at scrape time.
type PoolCollector struct {
	stats                               func() PoolStats
	conns, max, acquires, waited, waits *prometheus.Desc
	canceled                            *prometheus.Desc
}

// NewPoolCollector returns the collector of the pool stats returns.
// Register it on the process's registry.
func NewPoolCollector(stats func() PoolStats) *PoolCollector {
	return &PoolCollector{stats: stats,
		conns: prometheus.NewDesc(namespace+"_db_pool_connections",
			"Database connections by state: acquired (in use), idle, constructing.", []string{"state"}, nil),
		max: prometheus.NewDesc(namespace+"_db_pool_max_connections", "The database pool's size limit.", nil, nil),
		acquires: prometheus.NewDesc(namespace+"_db_pool_acquires_total",
			"Connections handed out by the database pool.", nil, nil),
		waited: prometheus.NewDesc(namespace+"_db_pool_waited_acquires_total",
			"Connection acquires that waited because the pool had no idle connection.", nil, nil),
		waits: prometheus.NewDesc(namespace+"_db_pool_acquire_wait_seconds_total",
			"Time spent waiting for a connection by the acquires that waited.", nil, nil),
		canceled: prometheus.NewDesc(namespace+"_db_pool_canceled_acquires_total",
			"Connection acquires given up (their request ended) before a connection came.", nil, nil),
	}
}

// Describe sends the descriptors of the pool metrics.
func (p *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.conns, p.max, p.acquires, p.waited, p.waits, p.canceled} {
		ch <- d
	}
}

// Collect sends the pool metrics of a fresh snapshot.
func (p *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.stats()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(p.conns, gauge, float64(s.Acquired), "acquired")
	ch <- prometheus.MustNewConstMetric(p.conns, gauge, float64(s.Idle), "idle")
	ch <- prometheus.MustNewConstMetric(p.conns, gauge, float64(s.Constructing), "constructing")
	ch <- prometheus.MustNewConstMetric(p.max, gauge, float64(s.Max))
	ch <- prometheus.MustNewConstMetric(p.acquires, counter, float64(s.Acquires))
	ch <- prometheus.MustNewConstMetric(p.waited, counter, float64(s.WaitedAcquires))
	ch <- prometheus.MustNewConstMetric(p.waits, counter, s.WaitTime.Seconds())
	ch <- prometheus.MustNewConstMetric(p.canceled, counter, float64(s.CanceledAcquires))
}
