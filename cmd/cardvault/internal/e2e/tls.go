package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// LoopbackTLSFiles writes a fresh self-signed certificate for 127.0.0.1,
// ::1 and localhost, valid for a day, and its private key, both PEM, to
// dir as name.pem and name-key.pem, and returns their paths. A child vault
// serves HTTPS with them (VAULT_TLS_CERT, VAULT_TLS_KEY); another trusts
// it through the certificate file (SSL_CERT_FILE on Linux). It returns an
// error when the certificate cannot be made or written.
func LoopbackTLSFiles(dir, name string) (certFile, keyFile string, err error) {
	cert, certPEM, err := loopbackCertificate()
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return certFile, keyFile, os.WriteFile(keyFile, keyPEM, 0o600)
}

// trustedTLS returns a TLS configuration trusting only the certificates
// in the PEM file rootFile, or an error when it holds none.
func trustedTLS(rootFile string) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New(rootFile + " holds no PEM certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// NewTLSClient is NewClient for a vault serving HTTPS with a certificate
// of the PEM file rootFile (trusting only that one). It returns an error
// when the file holds no certificate.
func NewTLSClient(baseURL, apiKey, rootFile string, conns int, timeout time.Duration) (*Client, error) {
	cfg, err := trustedTLS(rootFile)
	if err != nil {
		return nil, err
	}
	c := NewClient(baseURL, apiKey, conns, timeout)
	c.transport.TLSClientConfig = cfg
	return c, nil
}

// SendHeader is Send with extra request headers (an Idempotency-Key).
func (c *Client) SendHeader(ctx context.Context, method, path string, body []byte, header http.Header) (Answer, error) {
	return c.send(ctx, method, path, body, header)
}
