package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Destination is a forwarding destination on loopback that answers at
// once: every request gets 200 and a small JSON body as soon as its body
// is read. It speaks HTTPS (HTTP/2 or HTTP/1.1) with a certificate of its
// own for 127.0.0.1, made when it starts; a vault trusts it through
// CertFile (for a child vault on Linux, SSL_CERT_FILE=CertFile).
type Destination struct {
	srv      *http.Server
	url      string
	certFile string
	requests atomic.Int64
	done     chan struct{}
}

// destinationAnswer is what the destination answers, shaped like a vault's
// or a processor's token record.
var destinationAnswer = []byte(`{"id":"dest_tok_1","object":"token"}`)

// StartDestination starts a Destination on a free loopback port and writes
// its certificate, PEM, to dir/destination.pem. It returns an error when
// the certificate cannot be made or written or the port cannot be opened.
func StartDestination(dir string) (*Destination, error) {
	cert, certPEM, err := loopbackCertificate()
	if err != nil {
		return nil, err
	}
	d := &Destination{certFile: filepath.Join(dir, "destination.pem"), done: make(chan struct{})}
	if err := os.WriteFile(d.certFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.url = "https://" + ln.Addr().String()
	d.srv = &http.Server{Handler: http.HandlerFunc(d.serve), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { defer close(d.done); _ = d.srv.ServeTLS(ln, "", "") }()
	return d, nil
}

// serve reads the request's body and answers 200 at once.
func (d *Destination) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	d.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(destinationAnswer)
}

// URL returns the destination's base URL, https://127.0.0.1:PORT.
func (d *Destination) URL() string { return d.url }

// CertFile returns the file holding the destination's certificate, PEM.
func (d *Destination) CertFile() string { return d.certFile }

// Requests returns how many requests the destination has answered.
func (d *Destination) Requests() int64 { return d.requests.Load() }

// Close stops the destination, cutting off the requests in flight.
func (d *Destination) Close() {
	_ = d.srv.Close()
	<-d.done
}

// loopbackCertificate returns a fresh self-signed ECDSA certificate for
// 127.0.0.1, ::1 and localhost, valid for a day, and the certificate PEM.
func loopbackCertificate() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "cardvault bench destination"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
