package main

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/cardvault/cardvault/httpapi"
)

// HTTP server limits of `cardvault serve`. Slow or stuck clients are cut
// off by the timeouts; the in-flight cap and the rate limits (rawLimits)
// bound the work the vault accepts.
const (
	readHeaderTimeout = 5 * time.Second  // the request line and headers
	readTimeout       = 15 * time.Second // the whole request, body included
	// writeTimeout runs from the end of the headers to the end of the
	// answer: a forward may wait a destination's longest timeout (60 s).
	writeTimeout   = httpapi.ForwardDeadline + 5*time.Second
	idleTimeout    = 120 * time.Second // a kept-alive connection between requests
	maxHeaderBytes = 32 << 10          // request headers, all together
	// maxStreamsPerConn bounds the HTTP/2 streams one connection may have
	// open at once (Go's default is 250), so one connection cannot hold
	// most of the in-flight cap.
	maxStreamsPerConn = 16
)

// rawLimits holds the unparsed request budgets bound to flags.
type rawLimits struct {
	rate, burst, authFailures, maxInflight, trustedProxies string
}

// bind binds the request budget flags, each defaulting to its env variable
// and then to httpapi.DefaultLimits.
func (r *rawLimits) bind(fs *pflag.FlagSet) {
	d := httpapi.DefaultLimits
	fs.StringVar(&r.rate, "rate-limit", envOr("VAULT_RATE_LIMIT", strconv.FormatFloat(d.Rate, 'f', -1, 64)),
		"requests per second per API key; 0 for no limit (env VAULT_RATE_LIMIT)")
	fs.StringVar(&r.burst, "rate-burst", envOr("VAULT_RATE_BURST", strconv.Itoa(d.Burst)),
		"requests an API key may send at once above its rate (env VAULT_RATE_BURST)")
	fs.StringVar(&r.authFailures, "auth-failure-limit", envOr("VAULT_AUTH_FAILURE_LIMIT", strconv.Itoa(d.AuthFailures)),
		"failed authentications per minute per client address; 0 for no limit (env VAULT_AUTH_FAILURE_LIMIT)")
	fs.StringVar(&r.maxInflight, "max-inflight", envOr("VAULT_MAX_INFLIGHT", strconv.Itoa(d.MaxInflight)),
		"API requests served at once, more answer 503; 0 for no cap (env VAULT_MAX_INFLIGHT)")
	fs.StringVar(&r.trustedProxies, "trusted-proxies", os.Getenv("VAULT_TRUSTED_PROXIES"),
		"comma-separated CIDRs of the proxies whose X-Forwarded-For names the client address; none by default (env VAULT_TRUSTED_PROXIES)")
}

// maxLimit bounds every budget setting, to catch a misplaced digit.
const maxLimit = 1_000_000

// parse validates the budgets and returns every problem found.
func (r *rawLimits) parse() (httpapi.Limits, []error) {
	var l httpapi.Limits
	var errs []error
	var err error
	if l.Rate, err = strconv.ParseFloat(r.rate, 64); err != nil || math.IsNaN(l.Rate) || l.Rate < 0 || l.Rate > maxLimit {
		errs = append(errs, fmt.Errorf("VAULT_RATE_LIMIT %q must be a number of requests per second from 0 (no limit) to %d", r.rate, maxLimit))
	}
	if l.Burst, err = strconv.Atoi(r.burst); err != nil || l.Burst < 1 || l.Burst > maxLimit {
		errs = append(errs, fmt.Errorf("VAULT_RATE_BURST %q must be a whole number from 1 to %d", r.burst, maxLimit))
	}
	if l.AuthFailures, err = strconv.Atoi(r.authFailures); err != nil || l.AuthFailures < 0 || l.AuthFailures > maxLimit {
		errs = append(errs, fmt.Errorf("VAULT_AUTH_FAILURE_LIMIT %q must be a whole number per minute from 0 (no limit) to %d", r.authFailures, maxLimit))
	}
	if l.MaxInflight, err = strconv.Atoi(r.maxInflight); err != nil || l.MaxInflight < 0 || l.MaxInflight > maxLimit {
		errs = append(errs, fmt.Errorf("VAULT_MAX_INFLIGHT %q must be a whole number from 0 (no cap) to %d", r.maxInflight, maxLimit))
	}
	var perr error
	if l.TrustedProxies, perr = parseCIDRs(r.trustedProxies); perr != nil {
		errs = append(errs, perr)
	}
	return l, errs
}

// parseCIDRs parses a comma-separated list of CIDRs (a bare address is one
// host). It returns nil for an empty list and an error naming the first
// entry that is not a CIDR.
func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("VAULT_TRUSTED_PROXIES entry %q must be a CIDR such as 10.0.0.0/8 or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}
