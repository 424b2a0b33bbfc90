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
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
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

// rssSample is the vault's resident memory at a moment of the soak.
type rssSample struct {
	at time.Duration
	kb int64
}

// soakClient drives the mixed traffic against one vault.
type soakClient struct {
	api    *e2e.Client
	next   atomic.Int64
	ops    [3]atomic.Int64 // tokenize, read and detokenize requests sent
	mu     sync.Mutex
	tokens []string // acknowledged token ids
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
// detokenize in every 10. It returns the request's error.
func (c *soakClient) step(ctx context.Context, n int) error {
	switch id := c.randomToken(); {
	case n%10 >= 4 && n%10 < 8 && id != "":
		c.ops[1].Add(1)
		_, err := c.api.Call(ctx, http.MethodGet, "/tokens/"+id, nil, http.StatusOK)
		return err
	case n%10 >= 8 && id != "":
		c.ops[2].Add(1)
		_, err := c.api.Call(ctx, http.MethodPost, "/tokens/"+id+"/detokenize", []byte(`{"reason":"soak"}`), http.StatusOK)
		return err
	}
	c.ops[0].Add(1)
	b, err := c.api.Call(ctx, http.MethodPost, "/tokens", faultBody(c.next.Add(1)), http.StatusCreated)
	if err != nil {
		return err
	}
	id, err := e2e.TokenID(b)
	if err != nil {
		return fmt.Errorf("POST /tokens: %w", err)
	}
	c.mu.Lock()
	c.tokens = append(c.tokens, id)
	c.mu.Unlock()
	return nil
}

func TestSoak(t *testing.T) {
	d := soakDuration(t)
	s := newChildSetup(t, buildVault(t))
	child := startChildVault(t, s.bin, s.env...)
	c := &soakClient{api: e2e.NewClient(child.URL(), s.key, soakConcurrency, 30*time.Second)}
	defer c.api.Close()
	start := time.Now()
	load := e2e.StartLoad(context.Background(), e2e.LoadOptions{Workers: soakConcurrency, Duration: d},
		func(ctx context.Context, _, i int) error { return c.step(ctx, i) })
	defer load.Stop()

	var samples []rssSample
	t.Logf("soak: %s at concurrency %d against %s (pid %d): 40%% tokenize, 40%% read, 20%% detokenize", d, soakConcurrency, child.URL(), child.PID())
	t.Logf("%8s %9s %7s %7s %8s %8s %8s", "elapsed", "requests", "rps", "errors", "p50", "p99", "rss_MiB")
	rssTick, reportTick := time.NewTicker(soakRSSEvery), time.NewTicker(soakReport)
	defer rssTick.Stop()
	defer reportTick.Stop()
	lastReport := start
	for running := true; running; {
		select {
		case <-load.Finished():
			running = false
		case <-rssTick.C:
			kb, err := child.RSSKB()
			require.NoError(t, err, "the vault process is gone: %s", child.LogTail(logTail))
			samples = append(samples, rssSample{time.Since(start), kb})
		case <-reportTick.C:
			w := load.Window()
			rss := int64(0)
			if len(samples) > 0 {
				rss = samples[len(samples)-1].kb
			}
			t.Logf("%8s %9d %7.0f %7d %8s %8s %8.1f", time.Since(start).Round(time.Second), w.Requests,
				float64(len(w.Latencies))/time.Since(lastReport).Seconds(), w.Errors,
				e2e.Percentile(w.Latencies, 0.50).Round(10*time.Microsecond), e2e.Percentile(w.Latencies, 0.99).Round(10*time.Microsecond), float64(rss)/1024)
			lastReport = time.Now()
		}
	}
	res := load.Wait()

	middle, last := meanRSS(samples, d/3, 2*d/3), meanRSS(samples, 2*d/3, d+time.Minute)
	growth := float64(last)/float64(middle) - 1
	t.Logf("total: %d requests (%d tokenize, %d read, %d detokenize), %d errors, %.0f rps, p50 %s, p99 %s", res.All,
		c.ops[0].Load(), c.ops[1].Load(), c.ops[2].Load(), res.Errors, float64(res.Requests)/res.Elapsed.Seconds(),
		e2e.Percentile(res.Latencies, 0.50).Round(10*time.Microsecond), e2e.Percentile(res.Latencies, 0.99).Round(10*time.Microsecond))
	t.Logf("RSS: mean %.1f MiB in the middle third, %.1f MiB in the last third (%+.1f%%); peak %.1f MiB",
		float64(middle)/1024, float64(last)/1024, 100*growth, float64(peakRSS(samples))/1024)
	assert.Zero(t, res.Errors, "errors under soak; first: %v", res.FirstErr)
	assert.LessOrEqual(t, growth, soakRSSGrowth, "the vault's RSS keeps growing")
	require.Positive(t, res.Requests, "the soak made no request")
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
