package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDestinationAnswersAtOnceToWhoeverTrustsItsCertificate: a client that
// trusts CertFile gets 200 and the JSON answer, over HTTP/2; one that does
// not is refused in the handshake and never counted.
func TestDestinationAnswersAtOnceToWhoeverTrustsItsCertificate(t *testing.T) {
	d, err := StartDestination(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.True(t, strings.HasPrefix(d.URL(), "https://127.0.0.1:"), d.URL())

	pemBytes, err := os.ReadFile(d.CertFile())
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pemBytes))
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	res, err := trusting.Post(d.URL()+"/cde-import", "application/json", strings.NewReader(`{"card":{}}`))
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, 2, res.ProtoMajor, "HTTP/2, as processors speak")
	assert.JSONEq(t, string(destinationAnswer), string(body))

	strict := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	_, err = strict.Post(d.URL()+"/cde-import", "application/json", strings.NewReader(`{}`))
	assert.ErrorContains(t, err, "certificate")
	assert.Equal(t, int64(1), d.Requests())
}
