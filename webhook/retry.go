package webhook

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy says when a failed event is tried again and when the vault
// gives up on it.
type RetryPolicy struct {
	First       time.Duration // the wait after the first failed attempt
	Max         time.Duration // the wait doubles after each failure up to this
	GiveUpAfter time.Duration // no attempt is scheduled once this much time has passed since the first
	Jitter      float64       // each wait is scaled by a random factor in [1-Jitter, 1+Jitter)
}

// DefaultRetry waits 30 s after the first failure, doubling to at most an
// hour (30 s, 1 m, 2 m, … 32 m, then hourly), each wait ±20 %, and gives up
// after 3 days: 79 attempts without jitter.
var DefaultRetry = RetryPolicy{First: 30 * time.Second, Max: time.Hour, GiveUpAfter: 72 * time.Hour, Jitter: 0.2}

// Next returns when to make attempt number attempt+1 after attempt number
// attempt failed at now, the first having been made at first; the zero
// time means give up. r is a random number in [0, 1) for the jitter.
func (p RetryPolicy) Next(attempt int, first, now time.Time, r float64) time.Time {
	if now.Sub(first) >= p.GiveUpAfter {
		return time.Time{}
	}
	wait := p.First
	for i := 1; i < attempt && wait < p.Max; i++ {
		wait *= 2
	}
	wait = min(wait, p.Max)
	wait = time.Duration(float64(wait) * (1 + p.Jitter*(2*r-1)))
	return now.Add(wait)
}

// randFloat is the jitter's randomness.
func randFloat() float64 { return rand.Float64() }
