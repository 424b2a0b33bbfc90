// Package egress is the one HTTP client for everything the vault sends out:
// forwards to processors, webhook deliveries and exports.
//
// It checks the destination address at dial time, after DNS resolution, and
// dials the very address it checked, so a name that resolves to an internal
// address (or is rebound to one between checks) is refused: loopback,
// private, link-local, unique-local, CGNAT, multicast, documentation and
// other special-purpose ranges, and IPv6 forms that embed such an IPv4
// address. It speaks https only (plain http and loopback addresses only when
// Config.AllowLoopback is set, for development and tests), requires TLS 1.2
// or later, follows no redirects, ignores the HTTPS_PROXY/HTTP_PROXY
// environment (a proxy is used only when configured, and only for the host
// names allowed to use it), caps every response body and times out.
//
// A refused destination gives an error that matches ErrRefused and says only
// "destination address not allowed", so callers can show it to API clients
// without revealing what a name resolved to.
package egress
