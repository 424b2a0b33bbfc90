package egress

import (
	"crypto/sha256"
	"crypto/tls"
	"sync"
)

// maxCertTransports bounds how many client certificates keep a pool.
const maxCertTransports = 64

// certCache keeps one pair of transports per client certificate, so that a
// connection made with one certificate is never reused for another.
type certCache struct {
	mu   sync.Mutex
	m    map[[sha256.Size]byte]transports
	make func(*tls.Certificate) transports
}

// newCertCache returns an empty cache that builds transports with mk.
func newCertCache(mk func(*tls.Certificate) transports) *certCache {
	return &certCache{m: map[[sha256.Size]byte]transports{}, make: mk}
}

// get returns the transports of cert, building them on first use. Over
// maxCertTransports an arbitrary other entry is dropped (its idle
// connections closed; clients still holding it keep working).
func (c *certCache) get(cert *tls.Certificate) transports {
	key := certKey(cert)
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.m[key]; ok {
		return t
	}
	for k, t := range c.m {
		if len(c.m) < maxCertTransports {
			break
		}
		t.closeIdle()
		delete(c.m, k)
	}
	t := c.make(cert)
	c.m[key] = t
	return t
}

// closeIdle closes the idle connections of every cached transport.
func (c *certCache) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.m {
		t.closeIdle()
	}
}

// certKey is the SHA-256 of the certificate chain's DER bytes.
func certKey(cert *tls.Certificate) [sha256.Size]byte {
	h := sha256.New()
	for _, der := range cert.Certificate {
		h.Write(der)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}
