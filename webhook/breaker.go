package webhook

import (
	"sync"
	"time"
)

// The circuit breaker's defaults.
const (
	DefaultBreakAfter    = 3                // consecutive timeouts that open an endpoint's circuit
	DefaultBreakCooldown = time.Minute      // how long the circuit first stays open
	maxBreakCooldown     = 30 * time.Minute // the longest it stays open
)

// breaker remembers, per endpoint URL, the timeouts in a row and, once
// they reach the threshold, opens the endpoint's circuit: its events are
// not claimed until the cooldown ends. Then one attempt goes out; another
// timeout opens it again for twice as long (up to maxBreakCooldown), any
// answer closes it. It is per process: each replica learns on its own.
type breaker struct {
	after    int
	cooldown time.Duration

	mu        sync.Mutex
	endpoints map[string]*circuit
}

// circuit is one endpoint's state.
type circuit struct {
	timeouts  int           // in a row
	openUntil time.Time     // zero while closed
	cooldown  time.Duration // of the next opening
}

func newBreaker(after int, cooldown time.Duration) *breaker {
	return &breaker{after: after, cooldown: cooldown, endpoints: map[string]*circuit{}}
}

// record notes an attempt's end at now: a timeout or an answer (anything
// else, such as a refused connection, leaves the circuit as it is). It
// reports whether the endpoint's circuit is open afterwards.
func (b *breaker) record(url string, timedOut, answered bool, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case answered:
		delete(b.endpoints, url)
		return false
	case !timedOut:
		return b.openLocked(url, now)
	}
	c := b.endpoints[url]
	if c == nil {
		c = &circuit{cooldown: b.cooldown}
		b.endpoints[url] = c
	}
	if c.timeouts++; c.timeouts >= b.after {
		c.openUntil = now.Add(c.cooldown)
		c.cooldown = min(2*c.cooldown, maxBreakCooldown)
	}
	return c.timeouts >= b.after
}

// openLocked reports whether url's circuit is open at now, the lock held.
func (b *breaker) openLocked(url string, now time.Time) bool {
	c := b.endpoints[url]
	return c != nil && now.Before(c.openUntil)
}

// isOpen reports whether url's circuit is open at now.
func (b *breaker) isOpen(url string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openLocked(url, now)
}

// open returns the endpoints whose circuit is open at now.
func (b *breaker) open(now time.Time) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for u, c := range b.endpoints {
		if now.Before(c.openUntil) {
			out = append(out, u)
		}
	}
	return out
}
