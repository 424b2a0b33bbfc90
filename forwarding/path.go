package forwarding

import (
	"errors"
	"strings"
)

// anySegment in a path matches any one key, index or element.
const anySegment = "*"

// parsePath splits a field path of format into its segments: JSON keys and
// indices split at dots; a form key whole; XML element names split at
// slashes (a leading slash is allowed), with a trailing "@attr" becoming a
// last segment "@attr". It returns an error saying what is wrong.
func parsePath(f Format, p string) ([]string, error) {
	if p == "" || len(p) > maxPathLen {
		return nil, errors.New("path must be 1 to 512 characters")
	}
	switch f {
	case FormatJSON:
		return splitSegments(p, ".")
	case FormatForm:
		return []string{p}, nil
	case FormatXML:
		return parseXMLPath(p)
	}
	return nil, errors.New("path of an unknown format")
}

// splitSegments splits p at sep and refuses empty segments.
func splitSegments(p, sep string) ([]string, error) {
	segs := strings.Split(p, sep)
	for _, s := range segs {
		if s == "" {
			return nil, errors.New("path has an empty segment")
		}
	}
	return segs, nil
}

// parseXMLPath splits an XML element path, with an optional "@attr" on the
// last element.
func parseXMLPath(p string) ([]string, error) {
	segs, err := splitSegments(strings.TrimPrefix(p, "/"), "/")
	if err != nil {
		return nil, err
	}
	last := segs[len(segs)-1]
	if elem, attr, ok := strings.Cut(last, "@"); ok {
		segs = append(segs[:len(segs)-1], elem, "@"+attr)
		if elem == "" || !validXMLName(attr) {
			return nil, errors.New("path attribute must follow an element: element@name")
		}
	}
	for _, s := range segs {
		if s != anySegment && !validXMLName(strings.TrimPrefix(s, "@")) {
			return nil, errors.New("path segments must be XML names")
		}
	}
	return segs, nil
}

// validXMLName reports whether s is a plausible XML name without a prefix:
// letters, digits, '-', '_' and '.', not starting with a digit, '-' or '.'.
func validXMLName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 0x7f
		if i == 0 && !letter || !letter && !(r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// canonicalPath returns a comparable form of a path, for duplicate checks.
func canonicalPath(f Format, p string) string {
	segs, err := parsePath(f, p)
	if err != nil {
		return p
	}
	return strings.Join(segs, "\x00")
}

// pathMatches reports whether path (the location of a value in a body)
// matches pattern segment by segment.
func pathMatches(pattern, path []string) bool {
	if len(pattern) != len(path) {
		return false
	}
	for i, seg := range pattern {
		if seg != anySegment && seg != path[i] {
			return false
		}
	}
	return true
}
