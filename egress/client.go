package egress

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxBody  = 1 << 20          // bytes of a response body read before ErrBodyTooLarge
	DefaultTimeout  = 30 * time.Second // a whole exchange, body included
	dialTimeout     = 10 * time.Second
	tlsTimeout      = 10 * time.Second
	maxHeaderBytes  = 64 << 10
	idleConnTimeout = 90 * time.Second
)

// Config configures a Client. The zero value is a production client: https
// only, no loopback, no proxy, the system resolver and root CAs, 1 MiB
// bodies and 30 s timeouts.
type Config struct {
	// AllowLoopback admits loopback addresses (localhost, 127.0.0.0/8,
	// [::1]) and, for them only, plain http. For development and tests.
	AllowLoopback bool
	// Proxy is the explicitly configured egress proxy (VAULT_EGRESS_PROXY),
	// nil for none. The HTTPS_PROXY/HTTP_PROXY environment is never read.
	Proxy *url.URL
	// ProxyAllowHosts are the host names (exact, case-insensitive) whose
	// requests go through Proxy; every other host is dialled directly and
	// checked. The proxy itself, not the vault, then resolves and reaches
	// those hosts, so it must enforce its own destination policy.
	ProxyAllowHosts []string
	// Resolver looks names up; nil means net.DefaultResolver.
	Resolver Resolver
	// Dial opens TCP connections to already checked IP addresses (and to
	// the proxy); nil means a net.Dialer with a 10 s timeout.
	Dial DialFunc
	// RootCAs verifies servers; nil means the system's roots.
	RootCAs *x509.CertPool
	// MaxBody caps every response body, in bytes; 0 means DefaultMaxBody.
	MaxBody int64
	// Timeout bounds an exchange, reading the body included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Options adjust a Client for one destination or request (see For).
type Options struct {
	// Timeout replaces the client's timeout when positive.
	Timeout time.Duration
	// Certificate, when set, is presented to servers that ask for a client
	// certificate (mTLS). Connections made with it are never shared with
	// requests that carry another or none.
	Certificate *tls.Certificate
}

// Client sends the vault's outbound requests. It is safe for concurrent use.
type Client struct {
	shared  *shared
	routes  transports // the transports of this client's certificate (or none)
	timeout time.Duration
}

// shared is what every Client derived by For shares.
type shared struct {
	cfg        Config
	proxyHosts map[string]bool
	certs      *certCache
}

// transports are a direct (checked) transport and, when a proxy is
// configured, the proxied one.
type transports struct {
	direct  *http.Transport
	proxied *http.Transport // nil without a proxy
}

// New returns a Client for cfg with its defaults filled in. It never fails;
// a URL is checked when a request is sent (or up front with CheckURL).
func New(cfg Config) *Client {
	cfg = withDefaults(cfg)
	s := &shared{cfg: cfg, proxyHosts: hostSet(cfg.ProxyAllowHosts)}
	s.certs = newCertCache(s.newTransports)
	return &Client{shared: s, routes: s.newTransports(nil), timeout: cfg.Timeout}
}

// withDefaults fills the zero fields of cfg.
func withDefaults(cfg Config) Config {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return cfg
}

// hostSet returns the lower-cased names as a set.
func hostSet(names []string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[strings.ToLower(n)] = true
	}
	return set
}

// For returns a Client that shares c's configuration and connections but
// uses o's timeout and client certificate. Clients for the same certificate
// (by its DER bytes) share one connection pool, so calling For per request
// does not leak connections.
func (c *Client) For(o Options) *Client {
	d := *c
	if o.Timeout > 0 {
		d.timeout = o.Timeout
	}
	if o.Certificate != nil {
		d.routes = c.shared.certs.get(o.Certificate)
	}
	return &d
}

// Timeout returns the time the client allows an exchange.
func (c *Client) Timeout() time.Duration { return c.timeout }

// CloseIdleConnections closes the idle connections of every transport the
// client and those derived from it by For hold.
func (c *Client) CloseIdleConnections() {
	c.routes.closeIdle()
	c.shared.certs.closeIdle()
}

// newTransports builds the transports for cert (nil for none).
func (s *shared) newTransports(cert *tls.Certificate) transports {
	g := &guard{resolver: s.cfg.Resolver, dial: s.cfg.Dial, allowLoopback: s.cfg.AllowLoopback}
	t := transports{direct: s.transport(g.DialContext, cert)}
	if s.cfg.Proxy != nil {
		p := &proxyDialer{addr: proxyAddr(s.cfg.Proxy), dial: s.cfg.Dial}
		t.proxied = s.transport(p.DialContext, cert)
		t.proxied.Proxy = http.ProxyURL(s.cfg.Proxy)
	}
	return t
}

// transport returns an http.Transport that dials through dial, never reads
// proxy variables, and speaks TLS 1.2 or later.
func (s *shared) transport(dial DialFunc, cert *tls.Certificate) *http.Transport {
	return &http.Transport{
		Proxy:                  nil, // never http.ProxyFromEnvironment
		DialContext:            dial,
		TLSClientConfig:        tlsConfig(s.cfg.RootCAs, cert),
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    tlsTimeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
		IdleConnTimeout:        idleConnTimeout,
		MaxIdleConnsPerHost:    8,
	}
}

// tlsConfig returns the client TLS settings: TLS 1.2 minimum, roots, and
// the client certificate presented whenever a server asks for one.
func tlsConfig(roots *x509.CertPool, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		}
	}
	return c
}

// proxyAddr returns the host:port the transport dials for proxy u.
func proxyAddr(u *url.URL) string {
	if p := u.Port(); p != "" {
		return net.JoinHostPort(u.Hostname(), p)
	}
	port := map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
	return net.JoinHostPort(u.Hostname(), port)
}

// closeIdle closes the idle connections of both transports.
func (t transports) closeIdle() {
	t.direct.CloseIdleConnections()
	if t.proxied != nil {
		t.proxied.CloseIdleConnections()
	}
}

// errHostMismatch refuses a request whose Host header names another host
// than its URL.
var errHostMismatch = errors.New("egress: request Host differs from its URL host")
