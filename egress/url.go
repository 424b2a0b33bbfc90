package egress

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// maxHostLen is the longest DNS name, without its trailing dot.
const maxHostLen = 253

// URLError says why a URL is not acceptable as a destination. Its message
// names the rule broken and never quotes the URL.
type URLError struct {
	Reason string
}

// Error returns "egress: " and the reason.
func (e *URLError) Error() string { return "egress: " + e.Reason }

// urlError returns a *URLError with reason.
func urlError(reason string) error { return &URLError{Reason: reason} }

// CheckURL validates raw as a destination of the vault's outbound requests,
// before anything is sent. The scheme (in any case, "HTTPS://" too) must be
// https; plain http is accepted only when allowLoopback is true and the host
// is localhost or a loopback address. The host must be a DNS name of at least
// two labels of letters, digits and hyphens whose last label is not numeric
// (no trailing dot, no IP address in any spelling); with allowLoopback the
// names localhost, 127.0.0.0/8 and [::1] are accepted too. User information
// and fragments are refused; a port, when given, must be 1–65535. It
// returns nil or a *URLError. CheckURL does not resolve the name: the
// address is checked when the connection is dialled.
func CheckURL(raw string, allowLoopback bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return urlError("URL is not valid")
	}
	if strings.Contains(raw, "#") {
		return urlError("URL must not have a fragment")
	}
	return checkURL(u, allowLoopback)
}

// checkURL applies CheckURL's rules to a parsed URL.
func checkURL(u *url.URL, allowLoopback bool) error {
	switch {
	case u.Opaque != "" || u.Host == "":
		return urlError("URL must be absolute and name a host")
	case u.User != nil:
		return urlError("URL must not carry user information")
	case u.Fragment != "":
		return urlError("URL must not have a fragment")
	}
	if err := checkPort(u.Host, u.Port()); err != nil {
		return err
	}
	host := u.Hostname()
	if err := CheckHost(host, allowLoopback); err != nil {
		return err
	}
	return checkScheme(u.Scheme, loopbackHost(host) && allowLoopback)
}

// checkScheme accepts https, and http for a loopback destination.
func checkScheme(scheme string, loopback bool) error {
	switch {
	case scheme == "https":
		return nil
	case scheme == "http" && loopback:
		return nil
	}
	return urlError("URL scheme must be https")
}

// checkPort accepts no port or a decimal 1–65535 (hostport is the URL's
// host with its port, to catch an empty port after the colon).
func checkPort(hostport, port string) error {
	if port == "" {
		if strings.HasSuffix(hostport, ":") {
			return urlError("URL port must be a number from 1 to 65535")
		}
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '0' {
		return urlError("URL port must be a number from 1 to 65535")
	}
	return nil
}

// CheckHost validates host (without brackets or port) as CheckURL does:
// a DNS name, or with allowLoopback also localhost or a loopback address.
// It returns nil or a *URLError.
func CheckHost(host string, allowLoopback bool) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		if allowLoopback && isLoopback(ip) {
			return nil
		}
		return urlError("URL host must be a DNS name, not an IP address")
	}
	if strings.EqualFold(host, "localhost") {
		if allowLoopback {
			return nil
		}
		return urlError("URL host must not be localhost")
	}
	if !validDNSName(host) {
		return urlError("URL host must be a DNS name of letters, digits, hyphens and dots")
	}
	return nil
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return isLoopback(ip)
	}
	return strings.EqualFold(host, "localhost")
}

// validDNSName reports whether name has two or more labels of 1–63 ASCII
// letters, digits and inner hyphens, at most 253 bytes, no trailing dot, and
// a last label that is not all digits (so no spelling of an IPv4 address,
// such as 2130706433 or 0x7f.1, passes as a name).
func validDNSName(name string) bool {
	if len(name) > maxHostLen {
		return false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 || allDigits(labels[len(labels)-1]) {
		return false
	}
	for _, l := range labels {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

// validLabel reports whether l is 1–63 letters, digits and hyphens, not
// starting or ending with a hyphen.
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
