package metricstest

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
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

// Expose returns what g exposes in Prometheus's text format, failing tb
// when it cannot gather.
func Expose(tb testing.TB, g prometheus.Gatherer) []byte {
	tb.Helper()
	families, err := g.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			tb.Fatalf("encode %s: %v", f.GetName(), err)
		}
	}
	return b.Bytes()
}

// Value returns the value of the series of exposition written exactly as
// series (name and labels in the exposition's order, such as
// `cardvault_cvc_sweeps_total{outcome="ok"}`), failing tb when there is
// none.
func Value(tb testing.TB, exposition []byte, series string) float64 {
	tb.Helper()
	for _, line := range strings.Split(string(exposition), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				tb.Fatalf("series %s: %v", series, err)
			}
			return f
		}
	}
	tb.Fatalf("no series %s in the exposition", series)
	return 0
}
