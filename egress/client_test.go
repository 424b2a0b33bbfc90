package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDoRefusesInternalAddresses resolves a DNS name to each refused kind
// of address and checks that Do refuses it without ever dialling.
func TestDoRefusesInternalAddresses(t *testing.T) {
	answers := map[string][]string{
		"loopback":        {"127.0.0.1"},
		"loopback6":       {"::1"},
		"private":         {"10.1.2.3"},
		"private172":      {"172.20.0.5"},
		"private192":      {"192.168.0.10"},
		"cgnat":           {"100.100.100.100"},
		"metadata":        {"169.254.169.254"},
		"metadata6":       {"fd00:ec2::254"},
		"linklocal6":      {"fe80::1"},
		"uniquelocal":     {"fc00::5"},
		"sitelocal":       {"fec0::5"},
		"multicast":       {"224.0.0.251"},
		"unspecified":     {"0.0.0.0"},
		"unspecified6":    {"::"},
		"broadcast":       {"255.255.255.255"},
		"mapped-private":  {"::ffff:10.0.0.1"},
		"mapped-loopback": {"::ffff:127.0.0.1"},
		"nat64-private":   {"64:ff9b::c0a8:1"},
		"nat64-local":     {"64:ff9b:1::a00:1"},
		"documentation":   {"192.0.2.1"},
		"benchmark":       {"198.18.0.1"},
		"mixed":           {"93.184.215.14", "10.0.0.1"}, // one bad answer refuses the name
	}
	res := fakeResolver{}
	for name, ips := range answers {
		res[name+".refused.example"] = ips
	}
	dl := newDialLog(t)
	c := New(Config{Resolver: res, Dial: dl.Dial})
	for name := range answers {
		resp, err := get(t, c, "https://"+name+".refused.example/v1/payments")
		require.Error(t, err, name)
		assert.Nil(t, resp)
		assert.True(t, errors.Is(err, ErrRefused), "%s: %v", name, err)
		for _, ip := range answers[name] {
			assert.NotContains(t, err.Error(), ip, "the error never tells where the name points")
		}
		assert.Contains(t, err.Error(), "destination address not allowed")
	}
	assert.Empty(t, dl.calls(), "nothing was dialled")
}

// TestDoRefusesBadURLs checks that URL rules apply before any lookup.
func TestDoRefusesBadURLs(t *testing.T) {
	dl := newDialLog(t)
	c := New(Config{Resolver: fakeResolver{"api.processor.example": {"93.184.215.14"}}, Dial: dl.Dial})
	for _, u := range []string{
		"http://api.processor.example/x",
		"https://93.184.215.14/x",
		"https://127.0.0.1/x",
		"https://localhost/x",
		"https://u:p@api.processor.example/x",
	} {
		_, err := get(t, c, u)
		var ue *URLError
		assert.True(t, errors.As(err, &ue), "%s: %v", u, err)
	}
	req, err := http.NewRequest(http.MethodGet, "https://api.processor.example/x", nil)
	require.NoError(t, err)
	req.Host = "internal.example"
	_, err = c.Do(req)
	assert.ErrorIs(t, err, errHostMismatch)
	assert.Empty(t, dl.calls())
}

// TestDoLoopbackTLS is the positive path: a loopback TLS server reached by
// name (resolved by the test resolver) and by address, with AllowLoopback.
func TestDoLoopbackTLS(t *testing.T) {
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.Host)
	}))
	dl := newDialLog(t)
	c := New(Config{AllowLoopback: true, RootCAs: pool, Dial: dl.Dial,
		Resolver: fakeResolver{"example.com": {"127.0.0.1"}}})
	for _, host := range []string{"example.com", "127.0.0.1"} {
		info := &ConnInfo{}
		req, err := http.NewRequestWithContext(WithConnInfo(context.Background(), info),
			http.MethodGet, "https://"+host+":"+port(t, srv)+"/", nil)
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err, host)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, "hello "+host+":"+port(t, srv), string(body))
		assert.Equal(t, srv.Listener.Addr().String(), info.RemoteAddr.String())
		assert.Equal(t, tls.VersionTLS13, int(resp.TLS.Version))
	}
	assert.Equal(t, []string{"127.0.0.1:" + port(t, srv)}, dl.calls()[:1], "dialled the checked address")

	prod := New(Config{RootCAs: pool, Dial: dl.Dial, Resolver: fakeResolver{"example.com": {"127.0.0.1"}}})
	before := len(dl.calls())
	_, err := get(t, prod, "https://example.com:"+port(t, srv)+"/")
	assert.ErrorIs(t, err, ErrRefused, "without AllowLoopback the same name is refused")
	assert.Len(t, dl.calls(), before)
}

// TestDoPlainHTTPOnlyForLoopback sends plain http to a loopback server in
// dev mode.
func TestDoPlainHTTPOnlyForLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "plain")
	}))
	defer srv.Close()
	dl := newDialLog(t)
	c := New(Config{AllowLoopback: true, Dial: dl.Dial, Resolver: fakeResolver{"example.com": {"127.0.0.1"}}})
	resp, err := get(t, c, srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "plain", string(body))
	_, err = get(t, c, "http://example.com:"+port(t, srv)+"/")
	var ue *URLError
	assert.True(t, errors.As(err, &ue), "http to a DNS name stays refused: %v", err)
}

// TestDoRefusesOldTLS checks that a server offering at most TLS 1.1 is
// refused.
func TestDoRefusesOldTLS(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := New(Config{AllowLoopback: true, RootCAs: pool, Dial: newDialLog(t).Dial})
	_, err := get(t, c, srv.URL)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "protocol version")
	assert.Zero(t, served.Load())
	assert.Equal(t, uint16(tls.VersionTLS12), c.routes.direct.TLSClientConfig.MinVersion)
}

// TestDoFollowsNoRedirect returns the 3xx as is.
func TestDoFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) })
	srv, pool := tlsServer(t, mux)
	c := New(Config{AllowLoopback: true, RootCAs: pool, Dial: newDialLog(t).Dial})
	resp, err := get(t, c, srv.URL+"/start")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, "/elsewhere", resp.Header.Get("Location"))
	assert.Zero(t, elsewhere.Load())
}

// TestDoTimesOut uses a server that answers only when the client gives up.
func TestDoTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer close(release)
	c := New(Config{AllowLoopback: true, RootCAs: pool, Dial: newDialLog(t).Dial}).For(Options{Timeout: 150 * time.Millisecond})
	assert.Equal(t, 150*time.Millisecond, c.Timeout())
	start := time.Now()
	_, err := get(t, c, srv.URL)
	require.Error(t, err)
	var ne net.Error
	require.True(t, errors.As(err, &ne), "%v", err)
	assert.True(t, ne.Timeout())
	assert.Less(t, time.Since(start), 5*time.Second)
}

// TestDoCapsBody reads bodies at, and over, MaxBody.
func TestDoCapsBody(t *testing.T) {
	const limit = 1024
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := limit
		if r.URL.Path == "/big" {
			n = 4 * limit
		}
		_, _ = io.WriteString(w, strings.Repeat("x", n))
	}))
	c := New(Config{AllowLoopback: true, RootCAs: pool, Dial: newDialLog(t).Dial, MaxBody: limit})
	tests := []struct {
		path    string
		wantErr error
	}{{"/exact", nil}, {"/big", ErrBodyTooLarge}}
	for _, tt := range tests {
		resp, err := get(t, c, srv.URL+tt.path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.ErrorIs(t, err, tt.wantErr, tt.path)
		assert.Len(t, body, limit, tt.path)
	}
	assert.Equal(t, int64(DefaultMaxBody), New(Config{}).shared.cfg.MaxBody)
}

// TestDoIgnoresEnvironmentProxy points HTTPS_PROXY and HTTP_PROXY at a
// loopback listener and checks it is never contacted.
func TestDoIgnoresEnvironmentProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var proxied atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			proxied.Add(1)
			conn.Close()
		}
	}()
	for _, v := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"} {
		t.Setenv(v, "http://"+ln.Addr().String())
	}
	t.Setenv("NO_PROXY", "")
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "direct")
	}))
	// example.com is not a loopback name, so an environment proxy would be
	// used for it; the test resolver points it at the loopback server.
	c := New(Config{AllowLoopback: true, RootCAs: pool, Dial: newDialLog(t).Dial,
		Resolver: fakeResolver{"example.com": {"127.0.0.1"}}})
	resp, err := get(t, c, "https://example.com:"+port(t, srv)+"/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "direct", string(body))
	ln.Close()
	<-done
	assert.Zero(t, proxied.Load(), "the environment proxy was contacted")
	assert.Nil(t, c.routes.direct.Proxy)
}

// connectProxy is a loopback CONNECT proxy that records the targets asked
// for and tunnels them to one loopback address.
type connectProxy struct {
	target  string
	targets chan string
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.targets <- r.Host
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	_, _ = rw.WriteString("HTTP/1.1 200 OK\r\n\r\n")
	_ = rw.Flush()
	go func() { _, _ = io.Copy(up, bufio.NewReader(rw)); up.Close() }()
	_, _ = io.Copy(conn, up)
	conn.Close()
}

// TestDoConfiguredProxy sends an allow-listed host through the configured
// proxy and every other host directly, checked.
func TestDoConfiguredProxy(t *testing.T) {
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "via proxy")
	}))
	p := &connectProxy{target: srv.Listener.Addr().String(), targets: make(chan string, 4)}
	proxySrv := httptest.NewServer(p)
	defer proxySrv.Close()
	proxyURL, err := url.Parse(proxySrv.URL)
	require.NoError(t, err)
	dl := newDialLog(t)
	c := New(Config{Proxy: proxyURL, ProxyAllowHosts: []string{"Example.com"}, RootCAs: pool, Dial: dl.Dial,
		Resolver: fakeResolver{"other.example": {"10.0.0.1"}}})

	resp, err := get(t, c, "https://example.com:"+port(t, srv)+"/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "via proxy", string(body))
	assert.Equal(t, "example.com:"+port(t, srv), <-p.targets)
	assert.Equal(t, []string{proxyURL.Host}, dl.calls(), "only the proxy was dialled")

	_, err = get(t, c, "https://other.example/")
	assert.ErrorIs(t, err, ErrRefused, "a host off the proxy list is checked like any other")
	assert.Len(t, dl.calls(), 1)
	assert.Empty(t, p.targets)

	conn, err := (&proxyDialer{addr: proxyURL.Host, dial: dl.Dial}).DialContext(context.Background(), "tcp", "127.0.0.1:1")
	assert.Nil(t, conn)
	assert.ErrorIs(t, err, ErrRefused, "the proxied transport dials nothing but the proxy")
}
