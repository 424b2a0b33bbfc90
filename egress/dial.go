package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// ErrRefused is the error of a connection refused because the destination
// resolved to an address the vault may not reach. Its text says nothing
// about the address; errors.Is(err, ErrRefused) finds it inside the
// *url.Error that Do returns.
var ErrRefused = errors.New("destination address not allowed")

// errNoAddress is the error of a name that resolved to no address at all.
var errNoAddress = errors.New("egress: destination name has no address")

// Resolver looks host names up; *net.Resolver satisfies it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// DialFunc opens a network connection, like (*net.Dialer).DialContext.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// guard is the dialer of direct connections: it resolves, checks every
// address, then dials only checked addresses.
type guard struct {
	resolver      Resolver
	dial          DialFunc
	allowLoopback bool
}

// DialContext resolves addr's host, refuses the whole destination with
// ErrRefused when any of its addresses is not allowed (so a name cannot
// mix a public and an internal answer), and then dials the checked
// addresses in order by IP, returning the first connection or the first
// dial error. It returns the resolver's error when the lookup fails.
func (g *guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if !AddrAllowed(ip, g.allowLoopback) {
			return nil, ErrRefused
		}
	}
	return g.dialFirst(ctx, network, ips, port)
}

// resolve returns the addresses of host: itself when it is an IP literal,
// else the resolver's answer.
func (g *guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	answers, err := g.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]netip.Addr, 0, len(answers))
	for _, a := range answers {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return nil, ErrRefused
		}
		ips = append(ips, ip.WithZone(a.Zone))
	}
	if len(ips) == 0 {
		return nil, errNoAddress
	}
	return ips, nil
}

// dialFirst dials each of ips at port until one answers.
func (g *guard) dialFirst(ctx context.Context, network string, ips []netip.Addr, port string) (net.Conn, error) {
	var first error
	for _, ip := range ips {
		conn, err := g.dial(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// proxyDialer dials only the configured proxy: the proxied transport has no
// reason to connect anywhere else.
type proxyDialer struct {
	addr string // host:port of the proxy
	dial DialFunc
}

// DialContext dials addr when it is the proxy's address and returns
// ErrRefused for any other.
func (p *proxyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != p.addr {
		return nil, ErrRefused
	}
	return p.dial(ctx, network, addr)
}
