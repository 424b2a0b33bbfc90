package forwarding

import (
	"errors"
	"net/url"
	"strings"

	"github.com/cardvault/cardvault/egress"
)

// pattern is a parsed destination URL pattern.
type pattern struct {
	scheme string
	host   string // lower case, without port
	port   string // explicit, or the scheme's default
	path   string // escaped; without the trailing "*" for a prefix
	prefix bool
}

// parsePattern parses a destination URL pattern: an absolute URL that
// egress.CheckURL accepts, with no query, and a path that passes
// checkPath, optionally ending in "/*" (a prefix). It returns an error
// naming the rule broken.
func parsePattern(raw string, allowLoopback bool) (pattern, error) {
	body, prefix := strings.CutSuffix(raw, "*")
	if prefix && !strings.HasSuffix(body, "/") {
		return pattern{}, errors.New("url may end in * only after a slash")
	}
	u, err := parseURL(body, allowLoopback)
	if err != nil {
		return pattern{}, err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return pattern{}, errors.New("url must not have a query")
	}
	if strings.Contains(u.EscapedPath(), "*") {
		return pattern{}, errors.New("url may hold * only at the end of its path")
	}
	return newPattern(u, prefix), nil
}

// parseURL parses raw and applies the URL rules shared by patterns and
// requested URLs: egress.CheckURL, and checkPath on the escaped path.
func parseURL(raw string, allowLoopback bool) (*url.URL, error) {
	if err := egress.CheckURL(raw, allowLoopback); err != nil {
		var ue *egress.URLError
		if errors.As(err, &ue) {
			return nil, errors.New(strings.Replace(ue.Reason, "URL", "url", 1))
		}
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("url is not valid")
	}
	return u, checkPath(u.EscapedPath())
}

// newPattern builds a pattern from a checked URL.
func newPattern(u *url.URL, prefix bool) pattern {
	return pattern{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: effectivePort(u),
		path: pathOrSlash(u.EscapedPath()), prefix: prefix}
}

// checkPath refuses paths that servers may normalise into another path:
// dot segments ("." and ".."), empty segments ("//"), backslashes,
// semicolons (path parameters such as "..;"), and percent-encoded dots,
// slashes, backslashes, semicolons, percent signs and control bytes.
func checkPath(escaped string) error {
	if strings.ContainsAny(escaped, `\;`) {
		return errors.New(`url path must not contain \ or ;`)
	}
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] == '%' && forbiddenEscape(escaped[i+1:i+3]) {
			return errors.New("url path must not percent-encode dots, slashes, semicolons, percent signs or control characters")
		}
	}
	segs := strings.Split(escaped, "/")
	for i, seg := range segs {
		switch {
		case seg == "." || seg == "..":
			return errors.New("url path must not have . or .. segments")
		case seg == "" && i > 0 && i < len(segs)-1:
			return errors.New("url path must not have empty segments")
		}
	}
	return nil
}

// forbiddenEscape reports whether the two hex digits hex encode a byte a
// path must not hide: '.', '/', '\', ';', '%' or a control byte.
func forbiddenEscape(hex string) bool {
	h := strings.ToUpper(hex)
	switch h {
	case "2E", "2F", "5C", "3B", "25", "7F":
		return true
	}
	return h[0] == '0' || h[0] == '1'
}

// effectivePort returns u's port, or the scheme's default.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}

// pathOrSlash returns p, or "/" for the empty path.
func pathOrSlash(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// matches reports whether the checked URL u falls under p: same scheme,
// host (case-insensitively) and port, and the same escaped path or one
// under a prefix.
func (p pattern) matches(u *url.URL) bool {
	path := pathOrSlash(u.EscapedPath())
	if u.Scheme != p.scheme || strings.ToLower(u.Hostname()) != p.host || effectivePort(u) != p.port {
		return false
	}
	if p.prefix {
		return strings.HasPrefix(path, p.path)
	}
	return path == p.path
}

// Match returns the first destination whose URL pattern rawURL matches,
// and true; or the zero Destination and false when none does. rawURL must
// itself be a clean URL: no user information, fragment or IP literal (an IP
// literal only when a destination names that very literal, which only
// loopback patterns in development can), and none of the path tricks
// checkPath refuses. A query string is allowed and is not matched. Scheme
// and host compare case-insensitively and a default port equals no port;
// nothing else is normalised.
func Match(destinations []Destination, rawURL string) (Destination, bool) {
	u, err := parseURL(rawURL, true) // loopback only matches a pattern that names it
	if err != nil {
		return Destination{}, false
	}
	for _, d := range destinations {
		p, err := parsePattern(d.URL, true)
		if err == nil && p.matches(u) {
			return d, true
		}
	}
	return Destination{}, false
}
