//go:build ha && linux

package hacluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/e2e"
)

// answer is the outcome of one request of the traffic.
type answer struct {
	op         string // "tokenize" or "detokenize"
	key        string // the business key (tokenize) or the token id (detokenize)
	sent, done time.Time
	status     int   // 0 when no answer came
	err        error // a transport error: no answer at all
	code       string
	retryAfter string
	tokenID    string // a tokenize's 2xx
	mismatch   bool   // a detokenize's 200 with another card than the one tokenized
}

func (a answer) ok() bool { return a.err == nil && a.status >= 200 && a.status < 300 }

// ack is an acknowledged tokenization.
type ack struct {
	key, tokenID string
	card         int
	status       int       // 201 made, 200 found: a retry whose first commit had landed
	done         time.Time // when the acknowledgement came
}

// traffic is tokenize and detokenize workers sending through the load
// balancer until stop. A tokenize worker retries its business key until it
// is acknowledged, as a client does, so a commit whose answer was lost is
// found again by business_key rather than made twice.
type traffic struct {
	client *e2e.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	answers []answer
	acks    []ack
	next    int // the next card and business key
}

// retryPause is how long a worker waits before retrying a failed request;
// shorter than the vault's Retry-After so the recovery is seen to the
// tenth of a second. pace is how long it waits after a success: the
// traffic is steady, not a benchmark, and every token is read back at the
// end.
const (
	retryPause = 100 * time.Millisecond
	pace       = 100 * time.Millisecond
)

// startTraffic starts tokenizers and detokenizers against url with key.
func startTraffic(url, key string, tokenizers, detokenizers int) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{client: e2e.NewClient(url, key, tokenizers+detokenizers, 20*time.Second), cancel: cancel}
	for range tokenizers {
		tr.wg.Go(func() { tr.tokenizeLoop(ctx) })
	}
	for range detokenizers {
		tr.wg.Go(func() { tr.detokenizeLoop(ctx) })
	}
	return tr
}

// stop ends the traffic and waits for the workers.
func (tr *traffic) stop() {
	tr.cancel()
	tr.wg.Wait()
	tr.client.Close()
}

// tokenizeLoop tokenizes new cards, each until acknowledged.
func (tr *traffic) tokenizeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		tr.mu.Lock()
		n := tr.next
		tr.next++
		tr.mu.Unlock()
		key := fmt.Sprintf("ha-%d", n)
		for ctx.Err() == nil {
			a, body := tr.send(ctx, "tokenize", key, http.MethodPost, "/tokens", e2e.ForwardBody(key, e2e.CardNumber(n)))
			if a.ok() {
				a.tokenID, _ = e2e.TokenID(body)
				tr.record(a, &ack{key: key, tokenID: a.tokenID, card: n, status: a.status, done: a.done})
				pause(ctx, pace)
				break
			}
			tr.record(a, nil)
			pause(ctx, retryPause)
		}
	}
}

// detokenizeLoop reveals random acknowledged tokens and compares their card.
func (tr *traffic) detokenizeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		k, ok := tr.randomAck()
		if !ok {
			pause(ctx, 10*time.Millisecond)
			continue
		}
		a, body := tr.send(ctx, "detokenize", k.tokenID, http.MethodPost, "/tokens/"+k.tokenID+"/detokenize", []byte(`{"reason":"ha test"}`))
		if a.ok() {
			a.mismatch = revealedNumber(body) != e2e.CardNumber(k.card)
		}
		tr.record(a, nil)
		pause(ctx, pace)
	}
}

// send makes one request and returns its outcome and the answer's body.
func (tr *traffic) send(ctx context.Context, op, key, method, path string, body []byte) (answer, []byte) {
	a := answer{op: op, key: key, sent: time.Now()}
	res, err := tr.client.Send(ctx, method, path, body)
	a.done = time.Now()
	if err != nil {
		a.err = err
		return a, nil
	}
	a.status, a.retryAfter = res.Status, res.Header.Get("Retry-After")
	_, a.code = res.APIError()
	return a, res.Body
}

// record keeps an answer (unless the traffic was stopping) and an ack.
func (tr *traffic) record(a answer, k *ack) {
	if errors.Is(a.err, context.Canceled) {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.answers = append(tr.answers, a)
	if k != nil {
		tr.acks = append(tr.acks, *k)
	}
}

// randomAck returns an acknowledged tokenization, false before the first.
func (tr *traffic) randomAck() (ack, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.acks) == 0 {
		return ack{}, false
	}
	return tr.acks[rand.IntN(len(tr.acks))], true
}

// snapshot returns the answers and acks so far.
func (tr *traffic) snapshot() ([]answer, []ack) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]answer(nil), tr.answers...), append([]ack(nil), tr.acks...)
}

// revealedNumber reads the card number out of a detokenize answer.
func revealedNumber(body []byte) string {
	var r struct {
		Card struct {
			Number string `json:"number"`
		} `json:"card"`
	}
	_ = json.Unmarshal(body, &r)
	return r.Card.Number
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
