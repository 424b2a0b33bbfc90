package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/httpapi/console"
	"github.com/cardvault/cardvault/vault/postgres"
)

// workerName names this process in key job leases.
func workerName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// shutdownGrace is how long in-flight requests get to finish on SIGTERM.
const shutdownGrace = 20 * time.Second

func newServeCmd() *cobra.Command {
	var raw rawConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the vault's HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := raw.parse(true)
			if err != nil {
				return err
			}
			log := newLogger(cfg.LogLevel)
			tuneGC(os.Getenv, log)
			a, err := openApp(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer a.Close()
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), ln, a.svc, cfg, log, a.tel)
		},
	}
	raw.bindServer(cmd.Flags())
	raw.bindTLS(cmd.Flags())
	return cmd
}

// serve answers HTTP on ln and runs the background work (key refresh, CVC
// sweep, key jobs) until ctx ends, then drains in-flight requests for up to
// shutdownGrace. With cfg.MetricsListen it serves tel's metrics there (tel
// from openApp; when nil, a telemetry of the HTTP API, the importer, the
// webhooks and svc's state only).
func serve(ctx context.Context, ln net.Listener, svc *postgres.Service, cfg config, log *slog.Logger, tel *telemetry) error {
	keys := httpapi.KeyConfig{RootKEKURI: cfg.KEKURI, Cryptoperiod: cfg.Cryptoperiod, Propagation: cfg.propagation()}
	if cfg.Import.PublicURL == "" {
		cfg.Import.PublicURL = baseURL(ln.Addr())
		if cfg.TLS.enabled() {
			cfg.Import.PublicURL = "https://" + strings.TrimPrefix(cfg.Import.PublicURL, "http://")
		}
	}
	if tel == nil && cfg.MetricsListen != "" {
		tel = newTelemetry(cfg)
		tel.watch(svc, nil, cfg.Cryptoperiod)
	}
	if cfg.EgressAllowLoopback {
		log.Warn("VAULT_EGRESS_ALLOW_LOOPBACK is on: forwards and webhooks may reach loopback hosts over plain http; development and tests only")
	}
	imports, err := newImporter(svc, cfg.Import, log, tel.Imports())
	if err != nil {
		return err
	}
	exports, err := newExporter(svc, cfg.Export, log, tel.Exports())
	if err != nil {
		return err
	}
	fileImports := newFileImportWorker(svc, workerName(), cfg.Import.FileLeaseTTL, log)
	opts := []httpapi.Option{httpapi.WithKeyConfig(keys), tlsOption(cfg.TLS), httpapi.WithImportWaker(wakers{imports, fileImports}), httpapi.WithImportFileLimit(cfg.Import.FileMaxBytes), httpapi.WithLimits(cfg.Limits),
		httpapi.WithMetrics(tel.HTTP()), httpapi.WithExportWaker(exports)}
	if cfg.Console {
		opts = append(opts, httpapi.WithConsole(console.Options{}))
	}
	srv := &http.Server{
		Handler:           closeAmbiguousFraming(httpapi.New(svc, log, opts...)),
		ConnContext:       framingContext,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConn},
	}
	stopTLS, err := setupTLS(srv, cfg.TLS, log)
	if err != nil {
		return err
	}
	defer stopTLS()
	if cfg.DebugListen != "" {
		stopDebug, err := startDebugListener(cfg.DebugListen, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	if cfg.MetricsListen != "" {
		stopMetrics, err := startMetricsListener(cfg.MetricsListen, tel, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	defer runBackground(svc, imports, fileImports, cfg, log, tel, exports)()
	errc := make(chan error, 1)
	go func() { errc <- serveOn(srv, framingListener{ln}) }()
	log.Info("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", shutdownGrace.String())
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
