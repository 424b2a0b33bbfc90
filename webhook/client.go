package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/cardvault/cardvault/egress"
)

// DefaultTimeout bounds one delivery attempt: connecting, sending the event
// and reading the answer.
const DefaultTimeout = 10 * time.Second

// describe turns a failed request's error into the short, client-safe text
// recorded with the attempt (the tenant sees it in GET /webhook/deliveries).
func describe(err error, timeout time.Duration) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var urlErr *egress.URLError
	switch {
	case errors.Is(err, egress.ErrRefused):
		return "the URL resolves to an address webhooks may not reach"
	case errors.As(err, &urlErr):
		return "the URL is not one webhooks may be sent to: " + strings.TrimPrefix(urlErr.Error(), "egress: ")
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
