package console

import (
	"fmt"

	"github.com/cardvault/cardvault/vault"
)

// barChart is an SVG bar chart laid out on the server: the template only
// writes the coordinates, so the page needs no script and no inline style.
type barChart struct {
	Label         string // what the chart shows, for screen readers
	Class         string
	Width, Height int
	Bars          []bar
	Axis          []axisLabel
	Empty         bool // every value is zero
}

// bar is one bar with the text beside or below it.
type bar struct {
	X, Y, W, H   float64
	Class        string
	Title        string // the tooltip: what and how many
	Text         string // the value written at the bar's end
	TextX, TextY float64
}

// axisLabel is a label along a chart's axis.
type axisLabel struct {
	X, Y float64
	Text string
	End  bool // anchored at its end (right-aligned)
}

// Daily charts: one column per day, a label every labelEvery days.
const (
	dailyWidth, dailyHeight = 560, 160
	dailyTop, dailyBottom   = 16, 20
	labelEvery              = 7
)

// dailyChart charts value of each day as a column, oldest on the left.
func dailyChart(label, class string, days []vault.ActivityDay, value func(vault.ActivityDay) int64) barChart {
	ch := barChart{Label: label, Class: class, Width: dailyWidth, Height: dailyHeight, Empty: true}
	top := int64(1)
	for _, d := range days {
		top = max(top, value(d))
	}
	slot := float64(dailyWidth) / float64(max(1, len(days)))
	plot := float64(dailyHeight - dailyTop - dailyBottom)
	for i, d := range days {
		v := value(d)
		h := plot * float64(v) / float64(top)
		x := float64(i) * slot
		b := bar{X: x + slot*0.15, W: slot * 0.7, H: h, Y: dailyTop + plot - h, Class: "bar",
			Title: fmt.Sprintf("%s: %s", d.Day.Format("2006-01-02"), groupThousands(v)),
			TextX: x + slot/2, TextY: dailyTop + plot - h - 3}
		if v > 0 {
			b.Text, ch.Empty = groupThousands(v), false
		}
		ch.Bars = append(ch.Bars, b)
		if (len(days)-1-i)%labelEvery == 0 {
			ch.Axis = append(ch.Axis, axisLabel{X: x + slot/2, Y: dailyHeight - 4, Text: d.Day.Format("Jan 2")})
		}
	}
	return ch
}

// Key chart: one row per key version.
const (
	keyRow, keyLabelWidth, keyWidth = 28, 190, 560
	keyValueWidth                   = 110
)

// keyChart charts how many tokens each key version protects, one
// horizontal bar per version, classed by its state.
func keyChart(keys []vault.KeyVersion) barChart {
	ch := barChart{Label: "tokens protected by each data key version", Class: "key-chart", Width: keyWidth,
		Height: max(1, len(keys)) * keyRow, Empty: true}
	top := int64(1)
	for _, k := range keys {
		top = max(top, k.Tokens)
	}
	span := float64(keyWidth - keyLabelWidth - keyValueWidth)
	for i, k := range keys {
		y := float64(i * keyRow)
		w := span * float64(k.Tokens) / float64(top)
		ch.Bars = append(ch.Bars, bar{X: keyLabelWidth, Y: y + 5, W: max(w, 1), H: keyRow - 10,
			Class: "bar state-" + k.State, Title: fmt.Sprintf("key %d (%s): %s tokens", k.KeyID, k.State, groupThousands(k.Tokens)),
			Text: groupThousands(k.Tokens) + " tokens", TextX: keyLabelWidth + max(w, 1) + 6, TextY: y + keyRow/2 + 4})
		ch.Axis = append(ch.Axis, axisLabel{X: keyLabelWidth - 8, Y: y + keyRow/2 + 4, End: true,
			Text: fmt.Sprintf("key %d · %s", k.KeyID, k.State)})
		if k.Tokens > 0 {
			ch.Empty = false
		}
	}
	return ch
}
