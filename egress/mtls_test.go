package egress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA is a throwaway certificate authority for client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key}
}

// client issues a client certificate named cn.
func (ca *testCA) client(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDoClientCertificate sends a client certificate to a server that
// requires one, and only from the client made For it.
func TestDoClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	base := New(Config{AllowLoopback: true, RootCAs: roots, Dial: newDialLog(t).Dial})
	merchantA, merchantB := ca.client(t, "merchant-a"), ca.client(t, "merchant-b")

	for _, tt := range []struct {
		cert *tls.Certificate
		want string
	}{{merchantA, "merchant-a"}, {merchantB, "merchant-b"}, {merchantA, "merchant-a"}} {
		resp, err := get(t, base.For(Options{Certificate: tt.cert}), srv.URL)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, tt.want, string(body), "a pooled connection never carries another certificate")
	}
	_, err := get(t, base, srv.URL)
	assert.Error(t, err, "without a certificate the server refuses the handshake")

	assert.Same(t, base.For(Options{Certificate: merchantA}).routes.direct,
		base.For(Options{Certificate: merchantA}).routes.direct, "one pool per certificate")
	assert.NotSame(t, base.For(Options{Certificate: merchantA}).routes.direct,
		base.For(Options{Certificate: merchantB}).routes.direct)
	assert.Same(t, base.routes.direct, base.For(Options{Timeout: time.Second}).routes.direct)
	base.CloseIdleConnections()
}
