package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// Request framing (RFC 9112 §6.3): a request that carries both
// Content-Length and Transfer-Encoding may be an attempt at request
// smuggling through a proxy that framed it by the other header, and the
// server must close the connection after answering it. Go's server frames
// such a request by Transfer-Encoding and deletes Content-Length before any
// handler sees it, so the vault watches the bytes of each plain-HTTP
// connection for a header block holding both (framingListener) and answers
// such a connection with Connection: close (closeAmbiguousFraming). With
// TLS terminated by the vault itself the bytes are encrypted below the
// HTTP server and this watch does not apply.

// framingListener wraps every accepted connection in a framingConn.
type framingListener struct{ net.Listener }

// Accept returns the next connection, watched.
func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// framingConn watches the header lines read from its connection and
// remembers whether a header block held both length headers. Body bytes go
// through the same watch; a false alarm only closes a connection.
type framingConn struct {
	net.Conn
	ambiguous atomic.Bool
	line      []byte // the current line, cut at maxWatchedLine
	sawLength bool   // Content-Length in the current block
	sawChunks bool   // Transfer-Encoding in the current block
}

// maxWatchedLine is how much of a line the watch keeps: enough for either
// header's name.
const maxWatchedLine = 32

// Read reads from the connection and watches what it read.
func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.watch(p[:n])
	return n, err
}

// watch takes the next bytes of the stream, a line end at a time.
func (c *framingConn) watch(b []byte) {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.keep(b)
			return
		}
		c.keep(b[:i])
		c.endLine()
		b = b[i+1:]
	}
}

// keep adds b to the current line, up to maxWatchedLine bytes of it.
func (c *framingConn) keep(b []byte) {
	if room := maxWatchedLine - len(c.line); room > 0 {
		c.line = append(c.line, b[:min(room, len(b))]...)
	}
}

// endLine takes the end of the current line: a header naming either length
// is noted, and the empty line ending a header block judges the block.
func (c *framingConn) endLine() {
	line := bytes.TrimRight(c.line, "\r")
	c.line = c.line[:0]
	switch {
	case len(line) == 0:
		if c.sawLength && c.sawChunks {
			c.ambiguous.Store(true)
		}
		c.sawLength, c.sawChunks = false, false
	case hasPrefixFold(line, "content-length:"):
		c.sawLength = true
	case hasPrefixFold(line, "transfer-encoding:"):
		c.sawChunks = true
	}
}

// hasPrefixFold reports whether b begins with prefix, in any case.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// framingKey is the context key of a request's framingConn.
type framingKey struct{}

// framingContext is the server's ConnContext: it lets handlers find the
// connection's watch.
func framingContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingKey{}, fc)
	}
	return ctx
}

// closeAmbiguousFraming answers with Connection: close on a connection
// that sent a request with both Content-Length and Transfer-Encoding, so
// the server closes it after this answer.
func closeAmbiguousFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fc, ok := r.Context().Value(framingKey{}).(*framingConn); ok && fc.ambiguous.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
