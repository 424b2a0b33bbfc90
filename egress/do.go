package egress

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
)

// ErrBodyTooLarge is returned by a response body's Read once the body has
// gone past the client's MaxBody: the bytes up to the cap are delivered, the
// rest is not read. A forward's caller then fails the exchange rather than
// store a truncated answer as if it were whole.
var ErrBodyTooLarge = errors.New("egress: response body exceeds the size limit")

// Do sends req as (*http.Client).Do does, with the client's rules: the URL
// must pass CheckURL (else a *URLError, nothing sent) and req.Host, when set,
// must equal the URL's host; the connection goes to a checked address (else
// an error matching ErrRefused) or, for a host allowed through the
// configured proxy, to that proxy; TLS 1.2 or later; no redirect is followed
// (a 3xx response is returned as it is); the exchange times out after the
// client's timeout (a net.Error whose Timeout() is true); the response body
// returns ErrBodyTooLarge past MaxBody. The caller closes the body.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if err := c.check(req); err != nil {
		return nil, err
	}
	req = withTrace(req)
	hc := &http.Client{Transport: c.route(req.URL.Hostname()), Timeout: c.timeout, CheckRedirect: noRedirect}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, max: c.shared.cfg.MaxBody}
	return resp, nil
}

// check applies the URL rules and the Host rule to req.
func (c *Client) check(req *http.Request) error {
	if req.URL == nil {
		return urlError("request has no URL")
	}
	if err := checkURL(req.URL, c.shared.cfg.AllowLoopback); err != nil {
		return err
	}
	if req.Host != "" && !strings.EqualFold(req.Host, req.URL.Host) {
		return errHostMismatch
	}
	return nil
}

// route returns the transport for host: the proxied one when a proxy is
// configured and host may use it, else the checked direct one.
func (c *Client) route(host string) http.RoundTripper {
	if c.routes.proxied != nil && c.shared.proxyHosts[strings.ToLower(host)] {
		return c.routes.proxied
	}
	return c.routes.direct
}

// noRedirect makes http.Client return a 3xx response instead of following it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// cappedBody delivers at most max bytes and then fails with ErrBodyTooLarge
// when the body holds more.
type cappedBody struct {
	rc  io.ReadCloser
	n   int64 // bytes read from rc
	max int64
}

// Read reads from the body; past max bytes it returns ErrBodyTooLarge.
func (b *cappedBody) Read(p []byte) (int, error) {
	if b.n > b.max {
		return 0, ErrBodyTooLarge
	}
	if rem := b.max - b.n + 1; int64(len(p)) > rem { // one byte more tells "over"
		p = p[:rem]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		return n - int(b.n-b.max), ErrBodyTooLarge
	}
	return n, err
}

// Close closes the underlying body.
func (b *cappedBody) Close() error { return b.rc.Close() }

// ConnInfo records which connection carried a request: Do fills it when
// the request's context holds it (see WithConnInfo).
type ConnInfo struct {
	// RemoteAddr is the address the request went to (the proxy's when it
	// went through the proxy); the zero value when no connection was made.
	RemoteAddr netip.AddrPort
	// Reused tells whether the connection came from the idle pool.
	Reused bool
}

type connInfoKey struct{}

// WithConnInfo returns ctx carrying info, for Do to fill in.
func WithConnInfo(ctx context.Context, info *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, info)
}

// withTrace returns req with a trace that fills the ConnInfo its context
// carries, or req itself when there is none.
func withTrace(req *http.Request) *http.Request {
	info, _ := req.Context().Value(connInfoKey{}).(*ConnInfo)
	if info == nil {
		return req
	}
	trace := &httptrace.ClientTrace{GotConn: func(gi httptrace.GotConnInfo) {
		info.Reused = gi.Reused
		if ap, err := netip.ParseAddrPort(gi.Conn.RemoteAddr().String()); err == nil {
			info.RemoteAddr = ap
		}
	}}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
}
