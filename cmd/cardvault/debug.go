package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// parseDebugListen validates the pprof listener's address: empty (off) or
// host:port on a loopback host, since profiles show the process's innards
// and the listener has no authentication.
func parseDebugListen(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err == nil && !isLoopbackHost(host) {
		err = errors.New("not a loopback host")
	}
	if err != nil {
		return "", fmt.Errorf("VAULT_DEBUG_LISTEN %q must be a loopback host:port such as 127.0.0.1:6060", addr)
	}
	return addr, nil
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startDebugListener serves Go's pprof handlers under /debug/pprof/ on
// addr, a loopback address, until the returned stop is called. It returns
// an error when it cannot listen or the address is not loopback.
func startDebugListener(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("debug listener: %s is not a loopback address", ln.Addr())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Warn("pprof debug listener is on: for diagnosis only", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
