package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress reporting of the commands that follow a job (`keys reencrypt
// --wait`, `import stripe --wait`, `import watch`).
const (
	// plainEvery is how often progress without a terminal (a log file, a
	// CI job) prints a line.
	plainEvery = 5 * time.Second
	// minRateWindow is the least elapsed time a rate is computed over: a
	// rate over a few milliseconds says nothing.
	minRateWindow = time.Second
)

// rateMeter measures progress per second from its first observation on,
// so a watch that starts while a job is half done does not count the work
// done before it.
type rateMeter struct {
	start   time.Time
	base    int64
	started bool
}

// rate records done at now and returns the items per second since the
// first observation; ok is false until minRateWindow has passed.
func (m *rateMeter) rate(now time.Time, done int64) (perSecond float64, ok bool) {
	if !m.started {
		m.start, m.base, m.started = now, done, true
	}
	elapsed := now.Sub(m.start)
	if elapsed < minRateWindow {
		return 0, false
	}
	return float64(done-m.base) / elapsed.Seconds(), true
}

// progress shows a job's progress: a bar on a terminal, and without one a
// plain line every plainEvery, so a log file gets lines rather than one
// endless line of carriage returns.
type progress struct {
	w     io.Writer
	unit  string                   // what is counted: "tokens", "cards"
	bar   *progressbar.ProgressBar // nil without a terminal
	meter rateMeter
	every time.Duration
	last  time.Time // when the last plain line was printed
	now   func() time.Time
}

// newProgress returns a progress report on w counting unit.
func newProgress(w io.Writer, unit string) *progress {
	p := &progress{w: w, unit: unit, every: plainEvery, now: time.Now}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions64(1, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(false), progressbar.OptionSetPredictTime(false),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetWidth(30))
	}
	return p
}

// update shows done of total under the words desc.
func (p *progress) update(desc string, done, total int64) {
	now := p.now()
	speed := p.speed(now, done, total)
	if p.bar != nil {
		if total > p.bar.GetMax64() {
			p.bar.ChangeMax64(total)
		}
		p.bar.Describe(desc + speed)
		_ = p.bar.Set64(done)
		return
	}
	if p.last.IsZero() || now.Sub(p.last) >= p.every {
		p.last = now
		p.line(desc, done, total, speed)
	}
}

// finish ends the report with done of total under desc, on a line of its
// own.
func (p *progress) finish(desc string, done, total int64) {
	speed := p.speed(p.now(), done, total)
	if p.bar != nil {
		p.bar.Describe(desc + speed)
		_ = p.bar.Set64(done)
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		return
	}
	p.line(desc, done, total, speed)
}

// note prints msg on a line of its own.
func (p *progress) note(msg string) {
	if p.bar != nil {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintln(p.w, msg)
}

// line prints one plain progress line.
func (p *progress) line(desc string, done, total int64, speed string) {
	pct := int64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	fmt.Fprintf(p.w, "%s: %d of %d %s (%d%%)%s\n", desc, done, total, p.unit, pct, speed)
}

// speed returns ", N unit/s, about D left" once the rate is measured over
// minRateWindow, and "" before.
func (p *progress) speed(now time.Time, done, total int64) string {
	r, ok := p.meter.rate(now, done)
	if !ok {
		return ""
	}
	s := fmt.Sprintf(", %.0f %s/s", r, p.unit)
	if r > 0 && done < total {
		s += ", about " + time.Duration(float64(total-done)/r*float64(time.Second)).Round(time.Second).String() + " left"
	}
	return s
}
