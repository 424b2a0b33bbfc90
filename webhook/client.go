package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/cardvault/cardvault/egress"
)

// DefaultTimeout bounds one delivery attempt: connecting, sending the event
// and reading the answer.
const DefaultTimeout = 10 * time.Second

// errNoAnswer is what an attempt that got no HTTP answer records, whatever
// the cause.
const errNoAnswer = "no answer: the endpoint could not be reached or did not answer in time"

// NewClient returns the client a Deliverer should send with: the guarded
// egress client (https only, private, loopback, link-local and other
// special addresses refused after name resolution, no redirect followed, no
// proxy from the environment), timing out after timeout. allowLoopback
// admits loopback endpoints and plain http to them, for development and
// tests (VAULT_EGRESS_ALLOW_LOOPBACK).
func NewClient(timeout time.Duration, allowLoopback bool) *egress.Client {
	return egress.New(egress.Config{AllowLoopback: allowLoopback, Timeout: timeout, MaxBody: maxAnswer})
}

// isTimeout reports whether err is an attempt running out of time.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// describe names the cause of a failed request for the operator's log.
func describe(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var urlErr *egress.URLError
	switch {
	case errors.Is(err, egress.ErrRefused):
		return "the URL resolves to an address webhooks may not reach"
	case errors.As(err, &urlErr):
		return urlErr.Reason
	case isTimeout(err):
		return "timeout"
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
