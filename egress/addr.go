package egress

import "net/netip"

// refusedV4 are the IPv4 ranges no egress may reach: everything IANA's
// special-purpose registry marks as not globally reachable, plus multicast
// and the reserved block. Loopback (127.0.0.0/8) is handled apart because
// AllowLoopback admits it.
var refusedV4 = prefixes(
	"0.0.0.0/8",       // "this network", 0.0.0.0 unspecified
	"10.0.0.0/8",      // private (RFC 1918)
	"100.64.0.0/10",   // shared address space, carrier-grade NAT (RFC 6598)
	"169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
	"172.16.0.0/12",   // private (RFC 1918)
	"192.0.0.0/24",    // IETF protocol assignments (holds 192.0.0.192, a metadata address)
	"192.0.2.0/24",    // documentation TEST-NET-1
	"192.88.99.0/24",  // deprecated 6to4 relay anycast
	"192.168.0.0/16",  // private (RFC 1918)
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation TEST-NET-2
	"203.0.113.0/24",  // documentation TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, holds the limited broadcast 255.255.255.255
)

// globalV6 is the only IPv6 block handed out as global unicast; anything
// outside it (and outside the NAT64 prefix) is refused.
var globalV6 = netip.MustParsePrefix("2000::/3")

// nat64 is the well-known NAT64 prefix (RFC 6052): its last 32 bits are an
// IPv4 address, judged by the IPv4 rules.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// refusedV6 are the special-purpose blocks inside 2000::/3. The others the
// request names — ::/128, ::1, ::/96 IPv4-compatible, 64:ff9b:1::/48
// local-use NAT64 (whose IPv4 placement depends on the operator's prefix
// length), 100::/64 discard, fc00::/7 unique-local (holds AWS's
// fd00:ec2::254), fe80::/10 link-local, fec0::/10 site-local, ff00::/8
// multicast — lie outside 2000::/3 and are refused by the allow-list.
var refusedV6 = prefixes(
	"2001::/23",     // IETF protocol assignments: Teredo, benchmarking, ORCHID
	"2001:db8::/32", // documentation
	"2002::/16",     // deprecated 6to4, embeds an IPv4 address
	"3fff::/20",     // documentation (RFC 9637)
)

// loopbackV4 is IPv4 loopback, admitted only with AllowLoopback.
var loopbackV4 = netip.MustParsePrefix("127.0.0.0/8")

// AddrAllowed reports whether the vault may connect to ip. IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d) and the well-known NAT64 prefix are judged
// by the IPv4 address they embed; a zone is ignored. Loopback addresses are
// allowed only when allowLoopback is true.
func AddrAllowed(ip netip.Addr, allowLoopback bool) bool {
	ip = ip.WithZone("").Unmap()
	switch {
	case !ip.IsValid():
		return false
	case ip.Is4():
		return v4Allowed(ip, allowLoopback)
	case nat64.Contains(ip): // a translator's loopback is never ours
		return v4Allowed(embeddedV4(ip), false)
	case ip == netip.IPv6Loopback():
		return allowLoopback
	}
	return globalV6.Contains(ip) && !inAny(refusedV6, ip)
}

// v4Allowed applies the IPv4 rules.
func v4Allowed(ip netip.Addr, allowLoopback bool) bool {
	if loopbackV4.Contains(ip) {
		return allowLoopback
	}
	return !inAny(refusedV4, ip)
}

// embeddedV4 returns the IPv4 address in the last 32 bits of ip.
func embeddedV4(ip netip.Addr) netip.Addr {
	b := ip.As16()
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
}

// isLoopback reports whether ip is a loopback address, mapped or not.
func isLoopback(ip netip.Addr) bool {
	return ip.WithZone("").Unmap().IsLoopback()
}

// inAny reports whether one of ps contains ip.
func inAny(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// prefixes parses CIDR strings; it panics on a typo, at package start.
func prefixes(cidrs ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		ps[i] = netip.MustParsePrefix(c)
	}
	return ps
}
