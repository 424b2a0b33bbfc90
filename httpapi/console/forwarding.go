package console

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// forwardsShown is how many of the latest forwards the forwarding view
// lists and charts.
const forwardsShown = 50

// forwardingView is the forwarding view's data: the tenant's destinations
// (never their secrets), its latest forwards as their stored redacted
// records (never card data), and the average time each destination took.
type forwardingView struct {
	Destinations []destinationRow
	Forwards     []forwardRow
	HasMore      bool
	Latency      barChart
}

// destinationRow is a destination as the view lists it: no secret, only
// whether it has a signature key or a client certificate.
type destinationRow struct {
	ID, URL, Preset, Format string
	HasSignatureKey         bool
	HasClientCert           bool
	CreatedAt               time.Time
}

// forwardRow is one forward as the view lists it: ids, URL, outcome and
// timing; never a body or a header.
type forwardRow struct {
	ID, DestinationID, URL string
	Status                 vault.ForwardStatus
	ErrorCode              string
	DestinationStatus      int // 0 when no answer came
	Duration               time.Duration
	Took                   string // Duration in milliseconds
	CreatedAt              time.Time
}

// forwardingRoutes registers the forwarding view.
func (c *Console) forwardingRoutes() {
	c.mux.HandleFunc("GET "+Path+"/forwarding", c.page(vault.ScopeForwardingRead, c.forwarding))
}

// forwarding serves the tenant's destinations and latest forwards; both
// reads are audited as their API twins.
func (c *Console) forwarding(q *request) error {
	dests, err := c.svc.ListDestinations(q.ctx(), q.actor())
	if err != nil {
		return err
	}
	page, err := c.svc.ListForwardingRequests(q.ctx(), q.actor(), vault.ListForwardingParams{Limit: forwardsShown})
	if err != nil {
		return err
	}
	fv := forwardingView{Destinations: destinationRows(dests), Forwards: forwardRows(page.Requests), HasMore: page.HasMore}
	fv.Latency = latencyChart(fv.Destinations, fv.Forwards)
	return c.show(q, "forwarding", "Forwarding", fv)
}

// destinationRows returns the listed fields of ds.
func destinationRows(ds []vault.ForwardDestination) []destinationRow {
	out := make([]destinationRow, 0, len(ds))
	for _, d := range ds {
		out = append(out, destinationRow{ID: d.ID, URL: d.URL, Preset: d.Preset, Format: formatOf(d.Config),
			HasSignatureKey: d.HasSignatureKey, HasClientCert: d.HasClientCert, CreatedAt: d.CreatedAt})
	}
	return out
}

// formatOf returns the body format a destination's configuration names,
// or "" when it names none or does not decode.
func formatOf(config json.RawMessage) string {
	var c struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(config, &c) != nil {
		return ""
	}
	return c.Format
}

// forwardRows returns the listed fields of rs: the redacted request and
// response bodies and headers are left out.
func forwardRows(rs []vault.ForwardingRequest) []forwardRow {
	out := make([]forwardRow, 0, len(rs))
	for _, r := range rs {
		row := forwardRow{ID: r.ID, DestinationID: r.DestinationID, URL: r.URL, Status: r.Status,
			ErrorCode: r.ErrorCode, Duration: r.DestinationDuration, Took: millis(r.DestinationDuration), CreatedAt: r.CreatedAt}
		if r.Response != nil {
			row.DestinationStatus = r.Response.Status
		}
		out = append(out, row)
	}
	return out
}

// Latency chart: one row per destination.
const (
	latencyRow, latencyLabelWidth, latencyWidth = 28, 250, 640
	latencyValueWidth                           = 130
)

// latency is the average duration of a destination's listed forwards.
type latency struct {
	label string
	avg   time.Duration
	n     int
}

// latencyChart charts the average duration of the listed forwards of each
// destination, one horizontal bar per destination that has any, in the
// destinations' order.
func latencyChart(ds []destinationRow, fs []forwardRow) barChart {
	rows := averages(ds, fs)
	ch := barChart{Label: "average destination duration over the latest forwards", Class: "latency-chart",
		Width: latencyWidth, Height: max(1, len(rows)) * latencyRow, Empty: len(rows) == 0}
	top := time.Millisecond
	for _, r := range rows {
		top = max(top, r.avg)
	}
	span := float64(latencyWidth - latencyLabelWidth - latencyValueWidth)
	for i, r := range rows {
		y := float64(i * latencyRow)
		w := max(span*float64(r.avg)/float64(top), 1)
		text := fmt.Sprintf("%s · %d %s", millis(r.avg), r.n, plural(r.n, "forward", "forwards"))
		ch.Bars = append(ch.Bars, bar{X: latencyLabelWidth, Y: y + 5, W: w, H: latencyRow - 10, Class: "bar",
			Title: r.label + ": " + text, Text: text, TextX: latencyLabelWidth + w + 6, TextY: y + latencyRow/2 + 4})
		ch.Axis = append(ch.Axis, axisLabel{X: latencyLabelWidth - 8, Y: y + latencyRow/2 + 4, End: true, Text: shortID(r.label)})
	}
	return ch
}

// averages returns the average duration of fs per destination, listed
// destinations first, then any destination since removed.
func averages(ds []destinationRow, fs []forwardRow) []latency {
	sum, n := map[string]time.Duration{}, map[string]int{}
	var order []string
	for _, d := range ds {
		order = append(order, d.ID)
	}
	for _, f := range fs {
		if _, seen := n[f.DestinationID]; !seen && !listed(ds, f.DestinationID) {
			order = append(order, f.DestinationID)
		}
		sum[f.DestinationID] += f.Duration
		n[f.DestinationID]++
	}
	var out []latency
	for _, id := range order {
		if n[id] > 0 {
			out = append(out, latency{label: id, avg: sum[id] / time.Duration(n[id]), n: n[id]})
		}
	}
	return out
}

// shortID returns id cut to what the chart's label column holds; the
// bar's tooltip carries it whole.
func shortID(id string) string {
	const keep = 20
	if len(id) <= keep {
		return id
	}
	return id[:keep] + "…"
}

// millis returns d in milliseconds with one decimal, as "12.3 ms".
func millis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// listed reports whether id is one of ds.
func listed(ds []destinationRow, id string) bool {
	for _, d := range ds {
		if d.ID == id {
			return true
		}
	}
	return false
}
