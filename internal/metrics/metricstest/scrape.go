package metricstest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Scrape GETs url (a /metrics endpoint) and returns the exposition in
// Prometheus's text format, failing tb unless it answers 200.
func Scrape(tb testing.TB, url string) []byte {
	tb.Helper()
	res, err := http.Get(url) //nolint:noctx // a test's loopback scrape
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		tb.Fatalf("scrape %s: status %d, %v\n%s", url, res.StatusCode, err, body)
	}
	return body
}

// Series returns every series of an exposition in the text format, as its
// name with its labels ("cardvault_http_requests_total{code=\"200\",…}"),
// without values.
func Series(exposition []byte) []string {
	var out []string
	for _, line := range strings.Split(string(exposition), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			out = append(out, line[:i+1])
			continue
		}
		out = append(out, strings.Fields(line)[0])
	}
	return out
}

// Names returns the set of sample names of an exposition: a histogram
// appears as its _bucket, _sum and _count series.
func Names(exposition []byte) map[string]bool {
	names := map[string]bool{}
	for _, s := range Series(exposition) {
		if i := strings.IndexByte(s, '{'); i >= 0 {
			s = s[:i]
		}
		names[s] = true
	}
	return names
}
