package main

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/cardvault/cardvault/exporter"
	"github.com/cardvault/cardvault/importer"
	"github.com/cardvault/cardvault/importer/cardfile"
	"github.com/cardvault/cardvault/internal/loop"
	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/webhook"
)

// How often the background loops of a serving process run; the key refresh
// interval is configured (VAULT_KEY_REFRESH, keyRefreshFallback when a
// config leaves it unset).
const (
	keyRefreshFallback = 2 * time.Second
	cvcSweep           = time.Minute      // destroy expired CVCs
	keyJobPoll         = 2 * time.Second  // look for key jobs (re-encryption) to run
	auditPrune         = time.Hour        // prune audit rows past the retention
	auditPartitions    = 24 * time.Hour   // create the audit partitions of the coming months
	idempotencySweep   = 10 * time.Minute // delete expired idempotency keys
	sessionSweep       = 10 * time.Minute // delete ended console sessions
	forwardPrune       = time.Hour        // prune forwarding records past the retention
	cardHistoryPrune   = time.Hour        // delete replaced card versions past their retention
	forwardSweep       = 10 * time.Second // mark failed the pending forwards of stopped processes
	retentionPrune     = time.Hour        // delete finished webhook events, imports, exports and key jobs past their retention
)

// backgroundLoops lists every loop a serving process runs besides answering
// HTTP. runBackground starts them.
func backgroundLoops(svc *postgres.Service, imports *importer.Runner, fileImports *cardfile.Worker, cfg config, log *slog.Logger, tel *telemetry, exports *exporter.Runner) []loop.Loop {
	owner := workerName()
	keyRefresh := cmp.Or(cfg.KeyRefresh, keyRefreshFallback)
	retention := cmp.Or(cfg.AuditRetention, vault.DefaultAuditRetention)
	deliverer := webhook.NewDeliverer(svc, webhook.NewClient(webhook.DefaultTimeout, cfg.EgressAllowLoopback), log, owner, webhook.WithMetrics(tel.Webhooks()))
	return []loop.Loop{
		loop.Every(log, "key refresh", keyRefresh, svc.RefreshKeys),
		loop.Every(log, "cvc sweep", cvcSweep, count(log, "expired CVCs destroyed", svc.PurgeExpiredCVCs)),
		loop.Every(log, "key jobs", keyJobPoll, func(ctx context.Context) error { return svc.RunKeyJobs(ctx, owner) }),
		loop.Every(log, "audit checkpoint", cmp.Or(cfg.AuditCheckpointInterval, time.Minute), func(ctx context.Context) error {
			_, err := svc.WriteAuditCheckpoints(ctx, nil)
			return err
		}),
		loop.Every(log, "audit prune", auditPrune, func(ctx context.Context) error {
			// A resumed verify first: its checkpoint is what lets whole months be dropped.
			if r, err := svc.VerifyAuditResume(ctx, nil); err != nil || !r.OK {
				log.Error("audit verify before pruning found the trail not whole: months behind a break are kept", "error", err, "breaks", len(r.Breaks))
			}
			_, err := svc.PruneAudit(ctx, retention)
			return err
		}),
		loop.Every(log, "audit partitions", auditPartitions, func(ctx context.Context) error {
			_, _, err := svc.EnsureAuditPartitions(ctx)
			return err
		}),
		loop.Every(log, "card history prune", cardHistoryPrune, count(log, "replaced card versions deleted", func(ctx context.Context) (int64, error) {
			return svc.PruneTokenVersions(ctx, cmp.Or(cfg.CardHistoryRetention, vault.DefaultCardHistoryRetention))
		})),
		loop.Every(log, "idempotency sweep", idempotencySweep, count(log, "expired idempotency keys deleted", svc.PruneIdempotencyKeys)),
		loop.Every(log, "console session sweep", sessionSweep, count(log, "ended console sessions deleted", svc.PruneConsoleSessions)),
		loop.Every(log, "forwarding prune", forwardPrune, count(log, "forwarding records pruned", func(ctx context.Context) (int64, error) {
			return svc.PruneForwardingRequests(ctx, cfg.ForwardRetention)
		})),
		loop.Every(log, "forwarding pending sweep", forwardSweep, sweepPendingForwards(svc, cfg.ForwardPendingGrace, log)),
		loop.Every(log, "retention prune", retentionPrune, func(ctx context.Context) error {
			start := time.Now()
			c, err := svc.PruneRetained(ctx, cfg.Retention)
			if n := c.Total(); n > 0 {
				log.Info("finished rows pruned", "count", n, "webhook_events", c.WebhookEvents, "import_jobs", c.ImportJobs,
					"import_items", c.ImportItems, "import_file_rows", c.ImportFileRows, "import_file_chunks", c.ImportFileChunks,
					"export_jobs", c.ExportJobs, "export_items", c.ExportItems, "key_jobs", c.KeyJobs, "rows_per_second", float64(n)/time.Since(start).Seconds())
			}
			return err
		}),
		{Name: "imports", Run: imports.Run},
		{Name: "file imports", Run: fileImports.Run},
		{Name: "webhooks", Run: deliverer.Run},
		{Name: "exports", Run: exports.Run},
	}
}

// runBackground starts the background loops and returns stop, which stops
// them all, waits for them, then flushes the key usage one last time. serve
// calls it after the HTTP server has drained.
func runBackground(svc *postgres.Service, imports *importer.Runner, fileImports *cardfile.Worker, cfg config, log *slog.Logger, tel *telemetry, exports *exporter.Runner) (stop func()) {
	stopLoops := loop.Start(backgroundLoops(svc, imports, fileImports, cfg, log, tel, exports)...)
	return func() {
		stopLoops()
		flushKeyUsage(svc, log)
	}
}

// count adapts a pass that counts what it did to a loop tick that logs the
// count when it is not zero.
func count(log *slog.Logger, what string, pass func(context.Context) (int64, error)) func(context.Context) error {
	return func(ctx context.Context) error {
		n, err := pass(ctx)
		if n > 0 {
			log.Info(what, "count", n)
		}
		return err
	}
}

// sweepPendingForwards returns the tick of the pending-record sweeper: each
// pass starts where the last complete one left off, the first at the
// oldest record.
func sweepPendingForwards(svc *postgres.Service, grace time.Duration, log *slog.Logger) func(context.Context) error {
	var from time.Time
	return count(log, "pending forwards of stopped processes marked failed, outcome unknown", func(ctx context.Context) (int64, error) {
		n, next, err := svc.SweepPendingForwards(ctx, grace, from)
		from = next
		return n, err
	})
}

// flushKeyUsage writes this process's last encryption counts on the way out.
func flushKeyUsage(svc *postgres.Service, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := svc.FlushKeyUsage(ctx); err != nil {
		log.Error("flushing key usage", "error", err)
	}
}

// newFileImportWorker returns the worker that runs file import jobs, each
// held for leaseTTL without renewal.
func newFileImportWorker(svc *postgres.Service, owner string, leaseTTL time.Duration, log *slog.Logger) *cardfile.Worker {
	w, err := cardfile.NewWorker(cardfile.WorkerConfig{Queue: svc, Owner: owner, LeaseTTL: leaseTTL, Logger: log})
	if err != nil {
		panic(err) // svc and owner are always set
	}
	return w
}

// wakers wakes several import workers (the Stripe runner, the file
// worker) when an import job is created.
type wakers []interface{ Wake() }

// Wake wakes each.
func (w wakers) Wake() {
	for _, x := range w {
		x.Wake()
	}
}
