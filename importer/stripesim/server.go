package stripesim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// shutdownGrace bounds how long Close waits for answers in flight.
const shutdownGrace = 5 * time.Second

// Server is a simulator listening on a TCP address (for
// `cardvault dev --stripe-simulator N`). Its embedded *Sim seeds, injects
// faults and counts.
type Server struct {
	*Sim
	srv  *http.Server
	url  string
	done chan struct{}
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves a new
// simulator configured by cfg in the background. It returns an error when
// it cannot listen.
func Start(addr string, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stripesim: listen on %s: %w", addr, err)
	}
	s := &Server{Sim: New(cfg), done: make(chan struct{})}
	s.srv = &http.Server{Handler: s.Sim, ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + dialable(ln.Addr().(*net.TCPAddr))
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return s, nil
}

// URL returns the base URL to give stripe-go (BackendConfig.URL), e.g.
// "http://127.0.0.1:41234".
func (s *Server) URL() string { return s.url }

// Close stops listening, waits up to 5 s for answers in flight, then
// closes the remaining connections. It returns an error when connections
// had to be cut.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return err
}

// dialable is addr with an unspecified IP (0.0.0.0, ::) replaced by the
// loopback address, so the URL can be dialled.
func dialable(addr *net.TCPAddr) string {
	ip := addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(addr.Port))
}
