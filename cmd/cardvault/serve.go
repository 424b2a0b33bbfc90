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
			return serve(cmd.Context(), ln, a.svc, cfg, log)
		},
	}
	raw.bindServer(cmd.Flags())
	raw.bindTLS(cmd.Flags())
	return cmd
}

// serve answers HTTP on ln and runs the background work (key refresh, CVC
// sweep, key jobs) until ctx ends, then drains in-flight requests for up to
// shutdownGrace.
func serve(ctx context.Context, ln net.Listener, svc *postgres.Service, cfg config, log *slog.Logger) error {
	keys := httpapi.KeyConfig{RootKEKURI: cfg.KEKURI, Cryptoperiod: cfg.Cryptoperiod, Propagation: cfg.propagation()}
	if cfg.Import.PublicURL == "" {
		cfg.Import.PublicURL = baseURL(ln.Addr())
		if cfg.TLS.enabled() {
			cfg.Import.PublicURL = "https://" + strings.TrimPrefix(cfg.Import.PublicURL, "http://")
		}
	}
	if cfg.EgressAllowLoopback {
		log.Warn("VAULT_EGRESS_ALLOW_LOOPBACK is on: webhooks may reach loopback hosts over plain http; development and tests only")
	}
	imports, err := newImporter(svc, cfg.Import, log)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: closeAmbiguousFraming(httpapi.New(svc, log, httpapi.WithKeyConfig(keys), tlsOption(cfg.TLS),
			httpapi.WithImportWaker(imports), httpapi.WithLimits(cfg.Limits))),
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
	defer runBackground(svc, imports, cfg, log)()
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
