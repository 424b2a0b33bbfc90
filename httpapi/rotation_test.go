package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// loadClient keeps tokenizing and detokenizing through the real HTTP server
// until stop is closed, counting every answer that is not a success.
type loadClient struct {
	ts       *testServer
	key      string
	mu       sync.Mutex
	cards    map[string]string // token id → number
	requests atomic.Int64
	failures atomic.Int64
}

func (l *loadClient) run(t *testing.T, worker int, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		number := vaulttest.LuhnNumber(fmt.Sprintf("4%02d", worker), 16, i)
		res := l.ts.do(t, http.MethodPost, "/cde-import", l.key, cardBody(fmt.Sprintf("pm_load_%d_%d", worker, i), number))
		l.requests.Add(1)
		if res.status != http.StatusCreated {
			t.Logf("tokenize answered %d: %s", res.status, res.body)
			l.failures.Add(1)
			continue
		}
		id := res.json(t)["id"].(string)
		l.mu.Lock()
		l.cards[id] = number
		l.mu.Unlock()
		rev := l.ts.do(t, http.MethodPost, "/tokens/"+id+"/detokenize", l.key, "")
		l.requests.Add(1)
		if rev.status != http.StatusOK {
			t.Logf("detokenize answered %d: %s", rev.status, rev.body)
			l.failures.Add(1)
		} else if rev.json(t)["card"].(map[string]any)["number"] != number {
			t.Logf("detokenize answered another card")
			l.failures.Add(1)
		}
	}
}

func TestRotationUnderLoad(t *testing.T) {
	ts := newTestServer(t)
	key := ts.key(t)
	ctx := context.Background()
	actor := vaulttest.Actor(t, ts.svc, key)
	l := &loadClient{ts: ts, key: key, cards: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); l.run(t, w, stop) }()
	}

	keys := func() map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal(ts.do(t, http.MethodGet, "/keys", key, "").body, &m))
		return m["tenants"].([]any)[0].(map[string]any)
	}
	oldID := primaryKey(keys())
	l.waitFor(t, 100)
	rot := ts.do(t, http.MethodPost, "/keys/rotate", key, "")
	require.Equal(t, http.StatusOK, rot.status, "body: %s", rot.body)
	// A request that sealed with the old key before the promotion may
	// commit after the re-encryption job passed (the test server waits no
	// propagation delay): then the retire answers 409 key_in_use, and the
	// operator re-runs the job. A request that commits after the retire is
	// refused by the database and seals again with the new key, so no
	// request fails either way.
	retire := retireAfterReencrypt(t, ts, key, oldID)
	require.Equal(t, http.StatusNoContent, retire.status, "body: %s", retire.body)
	l.waitFor(t, l.requests.Load()+100)
	close(stop)
	wg.Wait()

	if !assert.Zero(t, l.failures.Load(), "zero failed requests out of %d", l.requests.Load()) {
		for _, line := range strings.Split(ts.log.String(), "\n") {
			if strings.Contains(line, "ERROR") {
				t.Log(line)
			}
		}
	}
	assert.Positive(t, l.requests.Load())
	for id, number := range l.cards {
		r, err := ts.svc.Detokenize(ctx, actor, mustParse(t, id), "")
		require.NoError(t, err)
		require.Equal(t, number, r.Card.PAN.Reveal())
	}
	for _, k := range keys()["keys"].([]any) {
		k := k.(map[string]any)
		if uint32(k["key_id"].(float64)) == oldID {
			assert.Equal(t, "disabled", k["state"])
			assert.Zero(t, k["tokens"], "no token references the retired version")
		}
	}
}

// retireAfterReencrypt runs a re-encryption job and retires keyID, again
// while the retire answers 409 key_in_use (rows under the key committed
// after the job passed), at most 5 times; it returns the last answer.
func retireAfterReencrypt(t *testing.T, ts *testServer, key string, keyID uint32) response {
	t.Helper()
	var retire response
	for range 5 {
		job := ts.do(t, http.MethodPost, "/keys/reencrypt", key, "")
		require.Equal(t, http.StatusAccepted, job.status, "body: %s", job.body)
		jobID := job.json(t)["id"].(string)
		ran, err := ts.svc.RunOneKeyJob(context.Background(), "test-worker", mustParse(t, jobID))
		require.NoError(t, err)
		require.True(t, ran)
		assert.Equal(t, "finished", ts.do(t, http.MethodGet, "/keys/jobs/"+jobID, key, "").json(t)["status"])
		retire = ts.do(t, http.MethodPost, "/keys/retire", key, fmt.Sprintf(`{"key_id":%d}`, keyID))
		if retire.status != http.StatusConflict {
			return retire
		}
		require.Contains(t, string(retire.body), "key_in_use", "body: %s", retire.body)
		t.Logf("retire answered 409 (rows committed after the job passed), re-running the job: %s", retire.body)
	}
	return retire
}

// waitFor returns once the load has made n requests.
func (l *loadClient) waitFor(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for l.requests.Load() < n {
		require.True(t, time.Now().Before(deadline), "the load stalled")
		time.Sleep(5 * time.Millisecond)
	}
}

func primaryKey(tenant map[string]any) uint32 {
	for _, k := range tenant["keys"].([]any) {
		if k.(map[string]any)["state"] == "primary" {
			return uint32(k.(map[string]any)["key_id"].(float64))
		}
	}
	return 0
}
