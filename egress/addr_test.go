package egress

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAddrAllowed(t *testing.T) {
	tests := []struct {
		ip            string
		allowed       bool // without AllowLoopback
		loopbackAllow bool // with AllowLoopback
	}{
		{"93.184.215.14", true, true},
		{"1.1.1.1", true, true},
		{"2606:4700:4700::1111", true, true},
		{"::ffff:93.184.215.14", true, true},
		{"64:ff9b::5db8:d70e", true, true}, // NAT64 of 93.184.215.14
		{"127.0.0.1", false, true},
		{"127.255.255.254", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"10.0.0.1", false, false},
		{"172.16.0.1", false, false},
		{"172.31.255.255", false, false},
		{"192.168.1.1", false, false},
		{"100.64.0.1", false, false},
		{"100.127.255.255", false, false},
		{"169.254.169.254", false, false},
		{"192.0.0.192", false, false},
		{"192.0.2.10", false, false},
		{"198.18.0.1", false, false},
		{"198.51.100.7", false, false},
		{"203.0.113.9", false, false},
		{"224.0.0.1", false, false},
		{"239.255.255.250", false, false},
		{"240.0.0.1", false, false},
		{"255.255.255.255", false, false},
		{"::", false, false},
		{"::ffff:10.0.0.1", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"::ffff:0.0.0.0", false, false},
		{"::10.0.0.1", false, false},           // IPv4-compatible (deprecated)
		{"64:ff9b::a00:1", false, false},       // NAT64 of 10.0.0.1
		{"64:ff9b::7f00:1", false, false},      // NAT64 of 127.0.0.1: a translator's loopback
		{"64:ff9b::a9fe:a9fe", false, false},   // NAT64 of 169.254.169.254
		{"64:ff9b:1::5db8:d70e", false, false}, // local-use NAT64
		{"100::1", false, false},
		{"fc00::1", false, false},
		{"fd00:ec2::254", false, false},
		{"fe80::1", false, false},
		{"fe80::1%eth0", false, false},
		{"fec0::1", false, false},
		{"ff02::1", false, false},
		{"2001:db8::1", false, false},
		{"2001::1", false, false},       // Teredo
		{"2001:2::1", false, false},     // benchmarking
		{"2002:a00:1::1", false, false}, // 6to4 of 10.0.0.1
		{"3fff::1", false, false},
		{"5f00::1", false, false}, // outside 2000::/3
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		assert.Equal(t, tt.allowed, AddrAllowed(ip, false), "%s", tt.ip)
		assert.Equal(t, tt.loopbackAllow, AddrAllowed(ip, true), "%s with loopback allowed", tt.ip)
	}
	assert.False(t, AddrAllowed(netip.Addr{}, true), "the zero Addr")
}
