//go:build ha && linux

package hacluster_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// requestDeadline is the vault's bound on one request (httpapi.RequestDeadline)
// plus a margin for the answer to travel: no request may hang past it.
const requestDeadline = 16 * time.Second

// verifyEverything checks, once the traffic stopped and the cluster is
// healthy again: every failed request was a fast 503 with Retry-After;
// every detokenize read back the card tokenized; every acknowledged token
// reads back equal now; no business key has two tokens; no token lacks its
// audit row or the other way round; the audit chains verify; and every
// token's webhook event was delivered, none twice.
func (h *harness) verifyEverything(t *testing.T, tr *traffic, results []*phaseResult) {
	ctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
	defer cancel()
	_, err := h.cluster.WaitHealthy(ctx)
	require.NoError(t, err)
	answers, acks := tr.snapshot()
	t.Run("every failure a fast 503 with Retry-After", func(t *testing.T) { checkFailures(t, answers) })
	t.Run("every acknowledged token reads back equal", func(t *testing.T) { h.checkReadBack(t, acks, results) })
	t.Run("one token per business key, each with its audit row", func(t *testing.T) { h.checkRows(t, acks) })
	t.Run("audit verify", func(t *testing.T) {
		out := h.cli("audit", "verify", "--tenant", h.tenantID)
		t.Logf("cardvault audit verify: %s", strings.TrimSpace(out))
		assert.True(t, strings.HasPrefix(out, "ok:"), out)
	})
	t.Run("every webhook event delivered once", func(t *testing.T) { h.checkWebhooks(t) })
}

// checkFailures: no transport error, no answer other than 503 with
// Retry-After, none slower than the request deadline, no detokenize
// showing another card.
func checkFailures(t *testing.T, answers []answer) {
	var bad []string
	mismatches, failed := 0, 0
	for _, a := range answers {
		if a.mismatch {
			mismatches++
		}
		if a.ok() {
			continue
		}
		failed++
		lat := a.done.Sub(a.sent)
		switch {
		case a.err != nil:
			bad = append(bad, fmt.Sprintf("%s: no answer after %s: %v", a.op, lat.Round(time.Millisecond), a.err))
		case a.status != http.StatusServiceUnavailable || a.retryAfter == "":
			bad = append(bad, fmt.Sprintf("%s: %d %s (Retry-After %q)", a.op, a.status, a.code, a.retryAfter))
		case lat > requestDeadline:
			bad = append(bad, fmt.Sprintf("%s: 503 after %s", a.op, lat.Round(time.Millisecond)))
		}
	}
	t.Logf("%d requests, %d answered 503, %d otherwise failed", len(answers), failed, len(bad))
	assertNone(t, "failed requests that were not a fast 503 with Retry-After", bad)
	assert.Zero(t, mismatches, "detokenize answers holding another card than the one tokenized")
}

// checkReadBack detokenizes every acknowledged token and compares the
// card; it counts the acknowledgements and the losses of each phase.
func (h *harness) checkReadBack(t *testing.T, acks []ack, results []*phaseResult) {
	lost := h.readBack(acks)
	for _, k := range acks {
		for _, r := range results {
			r.count(k, lost[k.tokenID])
		}
	}
	var bad []string
	for id, why := range lost {
		bad = append(bad, id+": "+why)
	}
	t.Logf("%d acknowledged tokens read back", len(acks))
	assertNone(t, "acknowledged tokens lost or changed", bad)
}

// readBack detokenizes every ack's token with 4 workers and returns the
// ones that did not read back equal, with why.
func (h *harness) readBack(acks []ack) map[string]string {
	client := e2e.NewClient(h.lb.URL, h.key, 4, 30*time.Second)
	defer client.Close()
	var mu sync.Mutex
	lost := map[string]string{}
	work := make(chan ack)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for k := range work {
				b, err := client.Call(context.Background(), http.MethodPost, "/tokens/"+k.tokenID+"/detokenize", []byte(`{}`), http.StatusOK)
				why := ""
				switch {
				case err != nil:
					why = err.Error()
				case revealedNumber(b) != e2e.CardNumber(k.card):
					why = "another card" // never print card numbers
				}
				if why != "" {
					mu.Lock()
					lost[k.tokenID] = why
					mu.Unlock()
				}
			}
		})
	}
	for _, k := range acks {
		work <- k
	}
	close(work)
	wg.Wait()
	return lost
}

// count files acknowledgement k under r's before, during or after when it
// came in r's phase.
func (r *phaseResult) count(k ack, lostWhy string) {
	at := k.done
	if at.Before(r.start) || (!r.end.IsZero() && at.After(r.end)) {
		return
	}
	switch {
	case at.Before(r.faultAt):
		r.acksBefore++
	case !at.After(r.recovery):
		r.acksDuring++
	default:
		r.acksAfter++
	}
	if lostWhy != "" {
		r.lost++
	}
}

// checkRows: one token per business key, each acknowledged key's token the
// one acknowledged, every token with its token.create audit row and no such
// row without its token.
func (h *harness) checkRows(t *testing.T, acks []ack) {
	ctx := context.Background()
	pool := h.pool()
	var dupKeys, tokensWithoutEvent, eventsWithoutToken int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT business_key FROM tokens
		WHERE tenant_id = $1 AND business_key IS NOT NULL GROUP BY business_key HAVING count(*) > 1) d`, h.tenantID).Scan(&dupKeys))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM tokens t WHERE t.tenant_id = $1
		AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.token_id = t.id AND a.action = 'token.create')`, h.tenantID).Scan(&tokensWithoutEvent))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events a WHERE a.tenant_id = $1
		AND a.action = 'token.create' AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = a.token_id)`, h.tenantID).Scan(&eventsWithoutToken))
	assert.Zero(t, dupKeys, "business keys with two tokens")
	assert.Zero(t, tokensWithoutEvent, "tokens without their token.create audit row")
	assert.Zero(t, eventsWithoutToken, "token.create audit rows without their token")

	rows, err := pool.Query(ctx, `SELECT business_key, id::text FROM tokens WHERE tenant_id = $1 AND business_key LIKE 'ha-%'`, h.tenantID)
	require.NoError(t, err)
	byKey := map[string]string{}
	for rows.Next() {
		var key, id string
		require.NoError(t, rows.Scan(&key, &id))
		byKey[key] = id
	}
	require.NoError(t, rows.Err())
	var bad []string
	replays := 0
	for _, k := range acks {
		if byKey[k.key] != k.tokenID {
			bad = append(bad, k.key)
		}
		if k.status == http.StatusOK {
			replays++
		}
	}
	t.Logf("%d business keys tokenized, %d acknowledged with 200 (a retry found the token its lost answer had made)", len(acks), replays)
	assertNone(t, "acknowledged business keys whose token is another one", bad)
}

// checkWebhooks waits until the outbox is empty and checks that every
// token's token.created event and every import's import.finished event
// arrived, none twice.
func (h *harness) checkWebhooks(t *testing.T) {
	ctx := context.Background()
	pool := h.pool()
	defer func() {
		if t.Failed() {
			quoteOutbox(t, pool)
		}
	}()
	poll(t, 2*time.Minute, "the webhook outbox to drain", func() bool {
		var pending int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_events WHERE delivered_at IS NULL`).Scan(&pending)
		return err == nil && pending == 0
	})
	var tokens int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM tokens WHERE tenant_id = $1`, h.tenantID).Scan(&tokens))
	created, createdTwice := h.hooks.tally("token.created")
	finished, finishedTwice := h.hooks.tally("import.finished")
	t.Logf("webhooks: %d token.created for %d tokens, %d import.finished", created, tokens, finished)
	assert.Equal(t, tokens, created, "a token.created event per token")
	assert.Equal(t, len(faults), finished, "an import.finished event per import")
	assert.Zero(t, createdTwice+finishedTwice, "events delivered twice")
}

// quoteOutbox logs the undelivered events, grouped by why they wait.
func quoteOutbox(t *testing.T, pool *pgxpool.Pool) {
	rows, err := pool.Query(context.Background(), `SELECT attempts, lease_owner IS NOT NULL, lease_expires_at > now(),
		next_attempt_at > now(), given_up_at IS NOT NULL, count(*) FROM webhook_events WHERE delivered_at IS NULL GROUP BY 1, 2, 3, 4, 5`)
	if err != nil {
		t.Logf("outbox: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var attempts, n int
		var leased, live, later, gaveUp bool
		if rows.Scan(&attempts, &leased, &live, &later, &gaveUp, &n) == nil {
			t.Logf("undelivered: %d events, %d attempts, leased %v (live %v), due later %v, given up %v", n, attempts, leased, live, later, gaveUp)
		}
	}
}
