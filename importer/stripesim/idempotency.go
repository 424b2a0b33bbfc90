package stripesim

import (
	"crypto/sha256"
	"sync"
)

// idemState is what begin found for an Idempotency-Key.
type idemState int

const (
	idemNew      idemState = iota // first use: run the request, then finish
	idemReplay                    // answered before: replay entry.ans
	idemMismatch                  // used before with other parameters
	idemInFlight                  // a request with this key is running
)

// idemEntry is one stored idempotent request.
type idemEntry struct {
	fingerprint [32]byte
	done        bool
	ans         answer
}

// idempotencyStore keeps the answer of every POST that carried an
// Idempotency-Key, per API key, like Stripe (which keeps them 24 hours; the
// simulator keeps them for its lifetime). Every answer is stored, errors
// included, except 429s and idempotency conflicts, which are answered
// before the request runs.
type idempotencyStore struct {
	mu      sync.Mutex
	entries map[string]*idemEntry
}

// begin looks the key up. For idemNew it returns the entry to finish.
func (st *idempotencyStore) begin(apiKey, key, path string, body []byte) (*idemEntry, idemState) {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(body)
	var fp [32]byte
	copy(fp[:], h.Sum(nil))

	id := apiKey + "\x00" + key
	st.mu.Lock()
	defer st.mu.Unlock()
	if e, ok := st.entries[id]; ok {
		switch {
		case !e.done:
			return e, idemInFlight
		case e.fingerprint != fp:
			return e, idemMismatch
		default:
			return e, idemReplay
		}
	}
	e := &idemEntry{fingerprint: fp}
	st.entries[id] = e
	return e, idemNew
}

// finish stores the answer of a request begun with idemNew.
func (st *idempotencyStore) finish(e *idemEntry, ans answer) {
	st.mu.Lock()
	defer st.mu.Unlock()
	e.ans = ans
	e.done = true
}
