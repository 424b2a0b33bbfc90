package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Conn is one keep-alive HTTP/1.1 connection to a vault carrying one
// request at a time, as each of wrk's connections does: a load worker's
// own, with no pool, no goroutine of its own and no URL to parse per
// request. Client's http.Transport hands every request to a connection's
// writer and reader goroutines and back, which cost the load generator
// about as much CPU as the vault's own HTTP floor (`cardvault bench`'s
// baseline-http) on the machine it shares with the vault. A Conn is not
// safe for concurrent use.
type Conn struct {
	host, apiKey string // host is also the address dialled
	timeout      time.Duration
	c            net.Conn
	r            *bufio.Reader
	req          []byte
}

// NewConn returns a connection to the vault at baseURL (http only) that
// sends apiKey ("" sends no X-API-Key) and gives each request timeout. It
// connects at the first request. It returns an error when baseURL is not
// an http URL.
func NewConn(baseURL, apiKey string, timeout time.Duration) (*Conn, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("e2e: a keep-alive connection needs an http:// URL, not %q", baseURL)
	}
	return &Conn{host: u.Host, apiKey: apiKey, timeout: timeout}, nil
}

// Close closes the connection, if one is open.
func (c *Conn) Close() {
	if c.c != nil {
		_ = c.c.Close()
		c.c, c.r = nil, nil
	}
}

// Call sends one request, a JSON body unless body is nil, and returns the
// body of an answer with status want. It returns an error naming the
// route (ids hidden) and the status for another status, and the network's
// error when no answer came (the connection is then closed and the next
// request opens another).
func (c *Conn) Call(ctx context.Context, method, path string, body []byte, want int) ([]byte, error) {
	status, out, err := c.roundTrip(ctx, method, path, body)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s %s: %w", method, Route(path), err)
	}
	if status != want {
		return nil, statusError(method, path, status, out)
	}
	return out, nil
}

// roundTrip writes the request and reads the answer, within c.timeout and
// ctx.
func (c *Conn) roundTrip(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if err := c.dial(ctx); err != nil {
		return 0, nil, err
	}
	if err := c.c.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.req = c.appendRequest(c.req[:0], method, path, body)
	if _, err := c.c.Write(c.req); err != nil {
		return 0, nil, err
	}
	return c.readAnswer()
}

// dial connects when no connection is open.
func (c *Conn) dial(ctx context.Context) error {
	if c.c != nil {
		return nil
	}
	d := net.Dialer{Timeout: c.timeout}
	conn, err := d.DialContext(ctx, "tcp", c.host)
	if err != nil {
		return err
	}
	c.c, c.r = conn, bufio.NewReaderSize(conn, 16<<10)
	return nil
}

// appendRequest appends the request's bytes to b.
func (c *Conn) appendRequest(b []byte, method, path string, body []byte) []byte {
	b = append(append(append(append(b, method...), ' '), path...), " HTTP/1.1\r\nHost: "...)
	b = append(append(b, c.host...), "\r\n"...)
	if c.apiKey != "" {
		b = append(append(append(b, "X-API-Key: "...), c.apiKey...), "\r\n"...)
	}
	if body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = append(strconv.AppendInt(b, int64(len(body)), 10), "\r\n"...)
	}
	return append(append(b, "\r\n"...), body...)
}

// maxAnswer bounds the body read, as Client's does.
const maxAnswer = 1 << 20

// readAnswer reads one answer's status and body (at most maxAnswer bytes),
// closing the connection afterwards when the vault asked to.
func (c *Conn) readAnswer() (int, []byte, error) {
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, nil, err
	}
	out, err := readBody(resp)
	if err != nil {
		return 0, nil, err
	}
	if resp.Close {
		c.Close()
	}
	return resp.StatusCode, out, nil
}

// readBody reads and closes resp's body, one allocation when its length
// is known.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	if resp.ContentLength < 0 || resp.ContentLength > maxAnswer {
		return io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	}
	out := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, out); err != nil {
		return nil, fmt.Errorf("a short answer: %w", err)
	}
	return out, nil
}

// statusError is the error of an answer whose status is not the one
// wanted: the route (ids hidden), the status and the start of the body.
func statusError(method, path string, status int, body []byte) error {
	// An error answer never holds card data; the cut keeps the line short.
	return fmt.Errorf("%s %s: HTTP %d %s", method, Route(path), status, body[:min(len(body), 300)])
}

// NewConns returns n connections, the w-th to baseURLs[w % len(baseURLs)]
// (a load worker's each, the load split evenly across vaults), or
// NewConn's error.
func NewConns(baseURLs []string, apiKey string, n int, timeout time.Duration) ([]*Conn, error) {
	conns := make([]*Conn, n)
	for w := range conns {
		c, err := NewConn(baseURLs[w%len(baseURLs)], apiKey, timeout)
		if err != nil {
			return nil, err
		}
		conns[w] = c
	}
	return conns, nil
}

// CloseConns closes every connection of conns.
func CloseConns(conns []*Conn) {
	for _, c := range conns {
		c.Close()
	}
}
