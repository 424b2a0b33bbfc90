package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/httpapi"
)

// tlsFiles names the PEM files of the server's TLS setup. With Cert and Key
// empty the server speaks plain HTTP.
type tlsFiles struct {
	Cert string // the server's certificate chain, leaf first
	Key  string // the private key of the leaf
	// ClientCA, when set, is the CA bundle client certificates are verified
	// against; the key-management routes then need one.
	ClientCA string
}

// enabled reports whether the server serves HTTPS.
func (t tlsFiles) enabled() bool { return t.Cert != "" }

// bindTLS binds serve's TLS flags, each defaulting to its env variable.
// Only serve binds them, so operator commands run with the same environment
// never read the server's key.
func (r *rawConfig) bindTLS(fs *pflag.FlagSet) {
	fs.StringVar(&r.tlsCert, "tls-cert", os.Getenv("VAULT_TLS_CERT"), "PEM certificate chain: serve HTTPS (env VAULT_TLS_CERT, with VAULT_TLS_KEY)")
	fs.StringVar(&r.tlsKey, "tls-key", os.Getenv("VAULT_TLS_KEY"), "PEM private key of --tls-cert (env VAULT_TLS_KEY)")
	fs.StringVar(&r.tlsClientCA, "tls-client-ca", os.Getenv("VAULT_TLS_CLIENT_CA"),
		"PEM CA bundle: verify client certificates and require one on /keys routes (env VAULT_TLS_CLIENT_CA)")
}

// parseTLS returns the TLS files and every problem with them: both or
// neither of certificate and key, files readable, the pair matching and
// valid now, the client CA bundle parsing.
func (r *rawConfig) parseTLS() (tlsFiles, []error) {
	t := tlsFiles{Cert: strings.TrimSpace(r.tlsCert), Key: strings.TrimSpace(r.tlsKey), ClientCA: strings.TrimSpace(r.tlsClientCA)}
	switch {
	case t.Cert == "" && t.Key == "" && t.ClientCA != "":
		return t, []error{errors.New("VAULT_TLS_CLIENT_CA needs VAULT_TLS_CERT and VAULT_TLS_KEY: client certificates are checked on top of TLS")}
	case t.Cert == "" && t.Key == "":
		return t, nil
	case t.Cert == "" || t.Key == "":
		return t, []error{errors.New("VAULT_TLS_CERT (--tls-cert) and VAULT_TLS_KEY (--tls-key) must be set together")}
	}
	var errs []error
	if _, err := loadKeyPair(t, time.Now()); err != nil {
		errs = append(errs, err)
	}
	if t.ClientCA != "" {
		if _, err := loadCertPool(t.ClientCA); err != nil {
			errs = append(errs, err)
		}
	}
	return t, errs
}

// loadKeyPair reads the certificate and key files and returns the pair. It
// returns an error naming the variable at fault when a file cannot be read,
// the key does not match the certificate, or the leaf is not valid at now.
// Errors never include key material.
func loadKeyPair(t tlsFiles, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(t.Cert)
	if err != nil {
		return nil, fmt.Errorf("VAULT_TLS_CERT: cannot read the certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(t.Key)
	if err != nil {
		return nil, fmt.Errorf("VAULT_TLS_KEY: cannot read the private key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("VAULT_TLS_CERT %s and VAULT_TLS_KEY %s are not a usable pair: %w", t.Cert, t.Key, err)
	}
	leaf := pair.Leaf // parsed by X509KeyPair since Go 1.23
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("VAULT_TLS_CERT %s is valid only from %s to %s", t.Cert,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &pair, nil
}

// loadCertPool reads a PEM CA bundle. It returns an error when the file
// cannot be read or holds no certificate.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("VAULT_TLS_CLIENT_CA: cannot read the CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("VAULT_TLS_CLIENT_CA %s holds no PEM certificate", path)
	}
	return pool, nil
}

// certHolder holds the served certificate; reload swaps it atomically, so
// handshakes in progress keep the one they started with.
type certHolder struct {
	files tlsFiles
	log   *slog.Logger
	cur   atomic.Pointer[tls.Certificate]
}

// newCertHolder loads the pair named by files; it returns loadKeyPair's
// error.
func newCertHolder(files tlsFiles, log *slog.Logger) (*certHolder, error) {
	h := &certHolder{files: files, log: log}
	pair, err := loadKeyPair(files, time.Now())
	if err != nil {
		return nil, err
	}
	h.cur.Store(pair)
	return h, nil
}

// reload loads the pair again. A pair that fails to load is logged and
// returned as an error, and the current certificate keeps serving.
func (h *certHolder) reload() error {
	pair, err := loadKeyPair(h.files, time.Now())
	if err != nil {
		h.log.Error("reloading the TLS certificate failed; still serving the previous one", "error", err)
		return err
	}
	h.cur.Store(pair)
	h.log.Info("reloaded the TLS certificate", "subject", pair.Leaf.Subject.String(),
		"not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// getCertificate is tls.Config.GetCertificate: the current pair.
func (h *certHolder) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cur.Load(), nil
}

// modernCipherSuites are the TLS 1.2 suites served: ECDHE key exchange with
// an AEAD only (TLS 1.3 suites are not configurable and all are AEADs).
var modernCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLSConfig returns the TLS configuration: TLS 1.2 minimum, modern
// suites, the holder's certificate, and with clientCAs client certificates
// verified when given (routes that need one check for it).
func serverTLSConfig(h *certHolder, clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   modernCipherSuites,
		GetCertificate: h.getCertificate,
	}
	if clientCAs != nil {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = clientCAs
	}
	return cfg
}

// tlsOption returns the httpapi option for files: HSTS, and client
// certificates on the key routes when a client CA is set; none for plain
// HTTP.
func tlsOption(files tlsFiles) httpapi.Option {
	if !files.enabled() {
		return func(*httpapi.Server) {}
	}
	return httpapi.WithTLS(httpapi.TLSOptions{ClientCertForKeys: files.ClientCA != ""})
}

// setupTLS configures srv for HTTPS when files enable it and, until the
// returned stop is called, reloads the certificate on SIGHUP. It returns an
// error when the files cannot be loaded. Without TLS a SIGHUP is only
// logged, so that a reload sent by habit never terminates the vault.
func setupTLS(srv *http.Server, files tlsFiles, log *slog.Logger) (stop func(), err error) {
	if !files.enabled() {
		return onSIGHUP(func() { log.Info("SIGHUP: nothing to reload, TLS is off") }), nil
	}
	h, err := newCertHolder(files, log)
	if err != nil {
		return nil, err
	}
	var clientCAs *x509.CertPool
	if files.ClientCA != "" {
		if clientCAs, err = loadCertPool(files.ClientCA); err != nil {
			return nil, err
		}
	}
	srv.TLSConfig = serverTLSConfig(h, clientCAs)
	log.Info("serving HTTPS", "min_version", "TLS 1.2", "client_certificates", clientCAs != nil)
	return onSIGHUP(func() { _ = h.reload() }), nil // a failed reload is logged; the old pair keeps serving
}

// onSIGHUP runs fn on every SIGHUP until the returned stop is called; the
// handler is installed only in between.
func onSIGHUP(fn func()) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				fn()
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		cancel()
		<-done
	}
}

// serveOn serves srv on ln, over TLS when setupTLS configured it.
func serveOn(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}
