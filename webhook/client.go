package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// DefaultTimeout bounds one delivery attempt: connecting, sending the event
// and reading the answer.
const DefaultTimeout = 10 * time.Second

// errAddressRefused is the dial error for an address webhooks may not reach.
var errAddressRefused = errors.New("webhook: address not allowed")

// NewHTTPClient returns the client a Deliverer should send with. timeout
// bounds each attempt. Redirects are not followed: a 3xx answer counts as a
// failure, as with Stripe's webhooks. Connections to link-local addresses
// (cloud metadata services such as 169.254.169.254), multicast and
// unspecified addresses are refused after name resolution, so a webhook URL
// cannot reach them. HTTPS_PROXY and friends are honoured.
func NewHTTPClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, ControlContext: refuseAddress}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// refuseAddress is the dialer's check of the resolved address.
func refuseAddress(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", errAddressRefused, err)
	}
	ip := ap.Addr().Unmap()
	if ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() {
		return errAddressRefused
	}
	return nil
}

// describe turns a failed request's error into the short, client-safe text
// recorded with the attempt (the tenant sees it in GET /webhook/deliveries).
func describe(err error, timeout time.Duration) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, errAddressRefused):
		return "the URL resolves to an address webhooks may not reach"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("timeout: no complete answer within %s", timeout)
	case errors.As(err, &dnsErr):
		return "the host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the receiver"
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return "the receiver's TLS certificate is not valid for the URL"
	}
	return "the connection to the receiver failed"
}
