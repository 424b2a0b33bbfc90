package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// syncBuffer collects a log across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// servedVault is the real serve() running in this process on a loopback
// port.
type servedVault struct {
	url  string
	addr string
	log  *syncBuffer
	stop func() error // ends serve like SIGTERM and returns its error (idempotent)
}

// startServe runs serve(svc, cfg) on 127.0.0.1 until the test ends (or
// stop is called) and returns once it answers GET /healthz; it fails the
// test if serve returns first.
func startServe(t *testing.T, svc *postgres.Service, cfg config) *servedVault {
	t.Helper()
	return startServeWith(t, svc, cfg, nil)
}

// startServeWith is startServe recording into tel (nil: no metrics unless
// cfg.MetricsListen asks for them).
func startServeWith(t *testing.T, svc *postgres.Service, cfg config, tel *telemetry) *servedVault {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sv := &servedVault{addr: ln.Addr().String(), log: &syncBuffer{}}
	sv.url = "http://" + sv.addr
	if cfg.TLS.enabled() {
		sv.url = "https://" + sv.addr
	}
	log := slog.New(slog.NewJSONHandler(sv.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	done := make(chan struct{})
	var serveErr error
	go func() {
		defer close(done)
		serveErr = serve(ctx, ln, svc, cfg, log, tel)
	}()
	sv.stop = func() error {
		cancel()
		<-done
		return serveErr
	}
	t.Cleanup(func() { assert.NoError(t, sv.stop(), "serve") })
	waitServing(t, sv.url, done, func() error { return serveErr })
	return sv
}

// waitServing polls url/healthz until it answers 200, failing the test
// when done closes first (serve returned) or 15 s pass. The probe does not
// verify the server's certificate: it only asks whether serve is up.
func waitServing(t *testing.T, url string, done <-chan struct{}, doneErr func() error) {
	t.Helper()
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // a liveness probe only
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("serve returned before serving: %v", doneErr())
		default:
		}
		if res, err := probe.Get(url + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer /healthz within 15s", url)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testCA is a throwaway certificate authority: ECDSA P-256 keys generated
// in the test, never written anywhere but the test's temp dir.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func randomSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	require.NoError(t, err)
	return n
}

// issued is a certificate and key in PEM, and the certificate's serial.
type issued struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

// issue signs a certificate for 127.0.0.1/localhost (server) or a client,
// valid from notBefore to notAfter.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage, notBefore, notAfter time.Time) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		serial:  tmpl.SerialNumber,
	}
}

// server issues a server certificate valid now.
func (ca *testCA) server(t *testing.T) issued {
	t.Helper()
	return ca.issue(t, "cardvault-test", x509.ExtKeyUsageServerAuth, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// write stores the pair as cert.pem and key.pem in dir and returns the
// files as serve's TLS settings.
func (p issued) write(t *testing.T, dir string) tlsFiles {
	t.Helper()
	files := tlsFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	require.NoError(t, os.WriteFile(files.Cert, p.certPEM, 0o600))
	require.NoError(t, os.WriteFile(files.Key, p.keyPEM, 0o600))
	return files
}

// tlsPair returns p as a client certificate for tls.Config.Certificates.
func (p issued) tlsPair(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(p.certPEM, p.keyPEM)
	require.NoError(t, err)
	return c
}

// pool returns a cert pool holding the CA.
func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// tlsServeConfig is a serve configuration for the package database with
// files as its TLS settings.
func tlsServeConfig(files tlsFiles) config {
	return config{KEKURI: "local:///test/kek.json", Cryptoperiod: 365 * 24 * time.Hour, KeyRefresh: time.Second, TLS: files}
}

// httpsClient returns a client trusting roots that opens a new connection
// (and handshake) for every request; mod adjusts its TLS configuration.
func httpsClient(roots *x509.CertPool, mod func(*tls.Config)) *http.Client {
	cfg := &tls.Config{RootCAs: roots}
	if mod != nil {
		mod(cfg)
	}
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func TestTLSSettingsAreValidatedUpFront(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	dir := t.TempDir()
	ca := newTestCA(t, "validation CA")
	good := ca.server(t).write(t, dir)
	other := ca.server(t)
	mismatchedKey := filepath.Join(dir, "other-key.pem")
	require.NoError(t, os.WriteFile(mismatchedKey, other.keyPEM, 0o600))
	expiredDir := filepath.Join(dir, "expired")
	require.NoError(t, os.Mkdir(expiredDir, 0o700))
	expired := ca.issue(t, "old", x509.ExtKeyUsageServerAuth, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)).write(t, expiredDir)
	notPEM := filepath.Join(dir, "not-a-ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"certificate without key", []string{"--tls-cert", good.Cert}, "must be set together"},
		{"key without certificate", []string{"--tls-key", good.Key}, "must be set together"},
		{"client CA without TLS", []string{"--tls-client-ca", good.Cert}, "VAULT_TLS_CLIENT_CA needs VAULT_TLS_CERT"},
		{"unreadable certificate", []string{"--tls-cert", missing, "--tls-key", good.Key}, "VAULT_TLS_CERT: cannot read"},
		{"unreadable key", []string{"--tls-cert", good.Cert, "--tls-key", missing}, "VAULT_TLS_KEY: cannot read"},
		{"key of another certificate", []string{"--tls-cert", good.Cert, "--tls-key", mismatchedKey}, "not a usable pair"},
		{"expired certificate", []string{"--tls-cert", expired.Cert, "--tls-key", expired.Key}, "is valid only from"},
		{"unreadable client CA", []string{"--tls-cert", good.Cert, "--tls-key", good.Key, "--tls-client-ca", missing}, "cannot read the CA bundle"},
		{"client CA not PEM", []string{"--tls-cert", good.Cert, "--tls-key", good.Key, "--tls-client-ca", notPEM}, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--database-url", dbURL, "--kek-uri", kek, "--listen", "127.0.0.1:0"}, tt.args...)
			_, _, err := run(t, args...)
			require.ErrorContains(t, err, tt.want)
			assert.NotContains(t, err.Error(), "PRIVATE KEY", "no key material in the message")
		})
	}
}

func TestTLSServesOnlyTLS12AndUpWithAEADSuites(t *testing.T) {
	ca := newTestCA(t, "server CA")
	files := ca.server(t).write(t, t.TempDir())
	sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), tlsServeConfig(files))
	tests := []struct {
		name    string
		mod     func(*tls.Config)
		wantErr bool
	}{
		{"TLS 1.0 refused", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10 }, true},
		{"TLS 1.1 refused", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }, true},
		{"TLS 1.2 with a CBC suite refused", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, true},
		{"TLS 1.2 with AES-GCM", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, false},
		{"TLS 1.2 with ChaCha20-Poly1305", func(c *tls.Config) {
			c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
		}, false},
		{"TLS 1.3", func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := httpsClient(ca.pool(), tt.mod).Get(sv.url + "/healthz")
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, "max-age=63072000; includeSubDomains", res.Header.Get("Strict-Transport-Security"))
		})
	}
}

func TestPlainHTTPSendsNoHSTS(t *testing.T) {
	sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), tlsServeConfig(tlsFiles{}))
	res, err := http.Get(sv.url + "/healthz")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Empty(t, res.Header.Get("Strict-Transport-Security"), "HSTS only over TLS")
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
}

func TestSIGHUPWithoutTLSIsLoggedNotFatal(t *testing.T) {
	sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), tlsServeConfig(tlsFiles{}))
	// startServe saw /healthz answer, so serve's SIGHUP handler is installed.
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	waitFor(t, 5*time.Second, "the SIGHUP in the log", func() bool {
		return strings.Contains(sv.log.String(), "SIGHUP: nothing to reload")
	})
	res, err := http.Get(sv.url + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "still serving")
}

// servedSerial handshakes with the server at addr and returns the serial
// of the certificate it presents.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitFor polls cond every 20 ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSIGHUPReloadsTheCertificate(t *testing.T) {
	ca := newTestCA(t, "reload CA")
	dir := t.TempDir()
	first := ca.server(t)
	files := first.write(t, dir)
	sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), tlsServeConfig(files))
	require.Equal(t, first.serial, servedSerial(t, sv.addr, ca.pool()), "serving the first certificate")
	// A handshake succeeded, so serve installed its SIGHUP handler; it stays
	// installed until serve returns at the end of the test.

	second := ca.server(t)
	second.write(t, dir)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	waitFor(t, 5*time.Second, "the second certificate", func() bool {
		return servedSerial(t, sv.addr, ca.pool()).Cmp(second.serial) == 0
	})

	// A broken pair (the key of another certificate) is refused; the
	// second certificate keeps serving.
	require.NoError(t, os.WriteFile(files.Key, ca.server(t).keyPEM, 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	waitFor(t, 5*time.Second, "the failed reload in the log", func() bool {
		return strings.Contains(sv.log.String(), "reloading the TLS certificate failed")
	})
	assert.Equal(t, second.serial, servedSerial(t, sv.addr, ca.pool()), "the previous certificate keeps serving")
	assert.NotContains(t, sv.log.String(), "PRIVATE KEY")
}

func TestCertificateReloadKeepsThePreviousPairOnAnyError(t *testing.T) {
	ca := newTestCA(t, "reload CA")
	tests := []struct {
		name    string
		corrupt func(t *testing.T, files tlsFiles)
	}{
		{"certificate file removed", func(t *testing.T, f tlsFiles) { require.NoError(t, os.Remove(f.Cert)) }},
		{"key of another certificate", func(t *testing.T, f tlsFiles) {
			require.NoError(t, os.WriteFile(f.Key, ca.server(t).keyPEM, 0o600))
		}},
		{"certificate truncated", func(t *testing.T, f tlsFiles) {
			require.NoError(t, os.WriteFile(f.Cert, []byte("-----BEGIN CERTIFICATE-----\nMIIB"), 0o600))
		}},
		{"expired certificate", func(t *testing.T, f tlsFiles) {
			ca.issue(t, "old", x509.ExtKeyUsageServerAuth, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)).write(t, filepath.Dir(f.Cert))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := ca.server(t)
			files := first.write(t, t.TempDir())
			log := &syncBuffer{}
			h, err := newCertHolder(files, slog.New(slog.NewJSONHandler(log, nil)))
			require.NoError(t, err)
			tt.corrupt(t, files)
			require.Error(t, h.reload())
			got, err := h.getCertificate(nil)
			require.NoError(t, err)
			assert.Equal(t, first.serial, got.Leaf.SerialNumber)
			assert.Contains(t, log.String(), `"level":"ERROR"`)
		})
	}
}

func TestClientCertificateGuardsOnlyTheKeyRoutes(t *testing.T) {
	serverCA, clientCA, strangerCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "stranger CA")
	dir := t.TempDir()
	files := serverCA.server(t).write(t, dir)
	files.ClientCA = filepath.Join(dir, "client-ca.pem")
	require.NoError(t, os.WriteFile(files.ClientCA, clientCA.pem, 0o600))
	svc := vaulttest.NewService(t, dbURL, vaulttest.Options{})
	_, key := vaulttest.Tenant(t, svc)
	sv := startServe(t, svc, tlsServeConfig(files))

	now := time.Now()
	operator := clientCA.issue(t, "operator", x509.ExtKeyUsageClientAuth, now.Add(-time.Hour), now.Add(time.Hour)).tlsPair(t)
	stranger := strangerCA.issue(t, "stranger", x509.ExtKeyUsageClientAuth, now.Add(-time.Hour), now.Add(time.Hour)).tlsPair(t)
	withCert := func(c tls.Certificate) func(*tls.Config) {
		// GetClientCertificate presents the certificate whatever CAs the
		// server names, as a hostile client would.
		return func(cfg *tls.Config) {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		}
	}
	body := `{"card":{"number":"` + vaulttest.LuhnNumber("424242", 16, 7) + `","exp_month":"04","exp_year":"2033"}}`
	tests := []struct {
		name       string
		clientCert func(*tls.Config)
		method     string
		path       string
		apiKey     string
		wantStatus int    // 0: the handshake fails
		wantCode   string // the error code of a 4xx
	}{
		{"keys without a client certificate", nil, http.MethodGet, "/keys", key, http.StatusForbidden, "client_certificate_required"},
		{"key rotation without a client certificate", nil, http.MethodPost, "/keys/rotate", key, http.StatusForbidden, "client_certificate_required"},
		{"keys with the operator certificate", withCert(operator), http.MethodGet, "/keys", key, http.StatusOK, ""},
		{"keys with the operator certificate but no API key", withCert(operator), http.MethodGet, "/keys", "", http.StatusUnauthorized, "invalid_api_key"},
		{"a certificate of another CA fails the handshake", withCert(stranger), http.MethodGet, "/keys", key, 0, ""},
		{"tokenize needs no client certificate", nil, http.MethodPost, "/tokens", key, http.StatusCreated, ""},
		{"health needs no client certificate", nil, http.MethodGet, "/healthz", "", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rb io.Reader
			if tt.method == http.MethodPost && tt.path == "/tokens" {
				rb = strings.NewReader(body)
			}
			req, err := http.NewRequest(tt.method, sv.url+tt.path, rb)
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			if tt.apiKey != "" {
				req.Header.Set("X-API-Key", tt.apiKey)
			}
			res, err := httpsClient(serverCA.pool(), tt.clientCert).Do(req)
			if tt.wantStatus == 0 {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			require.Equal(t, tt.wantStatus, res.StatusCode, "body: %s", b)
			assert.NotEmpty(t, res.Header.Get("Strict-Transport-Security"))
			if tt.wantCode != "" {
				var e struct {
					Error struct{ Type, Code, Message string } `json:"error"`
				}
				require.NoError(t, json.Unmarshal(b, &e))
				assert.Equal(t, tt.wantCode, e.Error.Code)
				assert.NotEmpty(t, e.Error.Message)
				assert.NotEmpty(t, res.Header.Get("Request-Id"))
			}
		})
	}
}

func TestHTTP2StreamsPerConnectionAreBounded(t *testing.T) {
	ca := newTestCA(t, "h2 CA")
	files := ca.server(t).write(t, t.TempDir())
	sv := startServe(t, vaulttest.NewService(t, dbURL, vaulttest.Options{}), tlsServeConfig(files))
	conn, err := tls.Dial("tcp", sv.addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	_, err = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	require.NoError(t, err)
	settings := readServerSettings(t, conn)
	assert.Equal(t, uint32(maxStreamsPerConn), settings[0x3], "SETTINGS_MAX_CONCURRENT_STREAMS")
}

// readServerSettings reads the server's first HTTP/2 frame, which must be
// a SETTINGS frame (RFC 9113 §3.4), and returns its values by identifier.
func readServerSettings(t *testing.T, r io.Reader) map[uint16]uint32 {
	t.Helper()
	var hdr [9]byte
	_, err := io.ReadFull(r, hdr[:])
	require.NoError(t, err)
	require.Equal(t, byte(0x4), hdr[3], "the first frame is SETTINGS")
	body := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	_, err = io.ReadFull(r, body)
	require.NoError(t, err)
	out := map[uint16]uint32{}
	for ; len(body) >= 6; body = body[6:] {
		out[binary.BigEndian.Uint16(body)] = binary.BigEndian.Uint32(body[2:])
	}
	return out
}
