//go:build soak && linux

package main

// The soak test: `make soak`, or
//
//	SOAK_DURATION=2m go test -tags soak -count=1 -v -run '^TestSoak$' -timeout 10m ./cmd/cardvault
//
// runs the real binary on loopback under mixed tokenize / read / detokenize
// traffic at a fixed concurrency, prints a table every 10 s and fails on any
// error or when the vault's resident memory keeps growing.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	soakConcurrency = 16
	soakReport      = 10 * time.Second
	soakRSSEvery    = time.Second
	// soakRSSGrowth is how much more the mean RSS of the last third may be
	// than that of the middle third.
	soakRSSGrowth = 0.10
)

// soakDuration is SOAK_DURATION, 2m by default.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("SOAK_DURATION")
	if v == "" {
		return 2 * time.Minute
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "SOAK_DURATION")
	require.True(t, d >= 30*time.Second && d <= 9*time.Minute, "SOAK_DURATION %s must be between 30s and 9m (the test times out at 10m)", d)
	return d
}

// soakStats collects latencies and errors per reporting interval.
type soakStats struct {
	mu       sync.Mutex
	interval []time.Duration
	all      []time.Duration
	errors   int
	firstErr string
	ops      map[string]int
}

func (s *soakStats) record(op string, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops[op]++
	if err != nil {
		s.errors++
		if s.firstErr == "" {
			s.firstErr = op + ": " + err.Error()
		}
		return
	}
	s.interval = append(s.interval, d)
	s.all = append(s.all, d)
}

// takeInterval returns the interval's latencies, sorted, and starts a new
// interval.
func (s *soakStats) takeInterval() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.interval
	s.interval = nil
	slices.Sort(out)
	return out
}

// quantile returns the q-quantile of sorted latencies, 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// vmRSSKB reads VmRSS of pid from /proc, in KiB.
func vmRSSKB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// rssSample is the vault's resident memory at a moment of the soak.
type rssSample struct {
	at time.Duration
	kb int64
}

// soakClient drives the mixed traffic against one vault.
type soakClient struct {
	url, key string
	http     *http.Client
	next     atomic.Int64
	mu       sync.Mutex
	tokens   []string // acknowledged token ids
}

// do sends one request and returns an error for anything but want.
func (c *soakClient) do(ctx context.Context, method, path, body string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-API-Key", c.key)
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d", method, routeOfSoak(path), res.StatusCode, want)
	}
	return b, nil
}

// routeOfSoak names a path without its token id.
func routeOfSoak(path string) string {
	if strings.HasPrefix(path, "/tokens/") {
		if strings.HasSuffix(path, "/detokenize") {
			return "/tokens/{id}/detokenize"
		}
		return "/tokens/{id}"
	}
	return path
}

// randomToken returns an acknowledged token id, "" before the first.
func (c *soakClient) randomToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tokens) == 0 {
		return ""
	}
	return c.tokens[rand.IntN(len(c.tokens))]
}

// step runs the n-th operation of the mix: 4 tokenize, 4 read, 2
// detokenize in every 10.
func (c *soakClient) step(ctx context.Context, n int64, stats *soakStats) {
	record := func(op string, d time.Duration, err error) {
		if err != nil && ctx.Err() != nil {
			return // cut off by the end of the soak, not by the vault
		}
		stats.record(op, d, err)
	}
	op := "tokenize"
	switch id := c.randomToken(); {
	case n%10 >= 4 && n%10 < 8 && id != "":
		op = "read"
		start := time.Now()
		_, err := c.do(ctx, http.MethodGet, "/tokens/"+id, "", http.StatusOK)
		record(op, time.Since(start), err)
		return
	case n%10 >= 8 && id != "":
		op = "detokenize"
		start := time.Now()
		_, err := c.do(ctx, http.MethodPost, "/tokens/"+id+"/detokenize", `{"reason":"soak"}`, http.StatusOK)
		record(op, time.Since(start), err)
		return
	}
	i := c.next.Add(1)
	start := time.Now()
	b, err := c.do(ctx, http.MethodPost, "/tokens", faultBody(i), http.StatusCreated)
	d := time.Since(start)
	if err == nil {
		var id string
		if id, err = tokenIDOf(b); err == nil {
			c.mu.Lock()
			c.tokens = append(c.tokens, id)
			c.mu.Unlock()
		}
	}
	record(op, d, err)
}

// tokenIDOf returns the id of a token record.
func tokenIDOf(b []byte) (string, error) {
	const key = `"id":"`
	i := strings.Index(string(b), key)
	if i < 0 || len(b) < i+len(key)+36 {
		return "", fmt.Errorf("no token id in the answer")
	}
	return string(b[i+len(key) : i+len(key)+36]), nil
}

func TestSoak(t *testing.T) {
	d := soakDuration(t)
	s := newChildSetup(t, buildVault(t))
	child := startChildVault(t, s.bin, s.env...)
	pid := child.cmd.Process.Pid
	c := &soakClient{url: child.url, key: s.key, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: soakConcurrency}}}
	stats := &soakStats{ops: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()

	var wg sync.WaitGroup
	var n atomic.Int64
	for range soakConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c.step(ctx, n.Add(1), stats)
			}
		}()
	}

	start := time.Now()
	var samples []rssSample
	t.Logf("soak: %s at concurrency %d against %s (pid %d): 40%% tokenize, 40%% read, 20%% detokenize", d, soakConcurrency, child.url, pid)
	t.Logf("%8s %9s %7s %7s %8s %8s %8s", "elapsed", "requests", "rps", "errors", "p50", "p99", "rss_MiB")
	rssTick, reportTick := time.NewTicker(soakRSSEvery), time.NewTicker(soakReport)
	defer rssTick.Stop()
	defer reportTick.Stop()
	lastReport, total := start, 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-rssTick.C:
			kb, err := vmRSSKB(pid)
			require.NoError(t, err, "the vault process is gone: %s", child.log)
			samples = append(samples, rssSample{time.Since(start), kb})
		case <-reportTick.C:
			lat := stats.takeInterval()
			total += len(lat)
			stats.mu.Lock()
			errs := stats.errors
			stats.mu.Unlock()
			rss := int64(0)
			if len(samples) > 0 {
				rss = samples[len(samples)-1].kb
			}
			t.Logf("%8s %9d %7.0f %7d %8s %8s %8.1f", time.Since(start).Round(time.Second), total,
				float64(len(lat))/time.Since(lastReport).Seconds(), errs,
				quantile(lat, 0.50).Round(10*time.Microsecond), quantile(lat, 0.99).Round(10*time.Microsecond), float64(rss)/1024)
			lastReport = time.Now()
		}
	}
	cancel()
	wg.Wait()

	stats.mu.Lock()
	defer stats.mu.Unlock()
	all := slices.Clone(stats.all)
	slices.Sort(all)
	middle, last := meanRSS(samples, d/3, 2*d/3), meanRSS(samples, 2*d/3, d+time.Minute)
	growth := float64(last)/float64(middle) - 1
	t.Logf("total: %d requests (%v), %d errors, %.0f rps, p50 %s, p99 %s", len(all)+stats.errors, stats.ops, stats.errors,
		float64(len(all))/d.Seconds(), quantile(all, 0.50).Round(10*time.Microsecond), quantile(all, 0.99).Round(10*time.Microsecond))
	t.Logf("RSS: mean %.1f MiB in the middle third, %.1f MiB in the last third (%+.1f%%); peak %.1f MiB",
		float64(middle)/1024, float64(last)/1024, 100*growth, float64(peakRSS(samples))/1024)
	assert.Zero(t, stats.errors, "errors under soak; first: %s", stats.firstErr)
	assert.LessOrEqual(t, growth, soakRSSGrowth, "the vault's RSS keeps growing")
	require.Greater(t, len(all), 0, "the soak made no request")
}

// meanRSS returns the mean RSS of the samples taken in [from, to).
func meanRSS(samples []rssSample, from, to time.Duration) int64 {
	var sum, n int64
	for _, s := range samples {
		if s.at >= from && s.at < to {
			sum += s.kb
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / n
}

// peakRSS returns the highest RSS sampled.
func peakRSS(samples []rssSample) int64 {
	var peak int64
	for _, s := range samples {
		peak = max(peak, s.kb)
	}
	return peak
}
