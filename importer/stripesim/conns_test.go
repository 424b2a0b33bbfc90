package stripesim

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestConcurrentForwardsReuseTheirConnectionsToTheDestination: 16
// forwarders sending 6 forwards each reuse their connections to the
// destination.
func TestConcurrentForwardsReuseTheirConnectionsToTheDestination(t *testing.T) {
	const forwarders, rounds = 16, 6
	sim, _, sc := startSim(t, Config{}, testSpec)
	d := &destination{status: http.StatusCreated, body: `{"id":"tok_1"}`}
	dest, conns := vaulttest.CountingServer(t, http.HandlerFunc(d.serve))
	cards, _ := cardPMs(t, sim)

	var wg sync.WaitGroup
	errs := make(chan error, forwarders*rounds)
	for f := range forwarders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				p := fwdParams(t, cards[(f*rounds+r)%len(cards)].ID, dest.URL+"/cde-import", allReplacements...)
				_, err := sc.V1ForwardingRequests.Create(context.Background(), p)
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	require.Len(t, d.requests(), forwarders*rounds)
	// Without reuse each forward opens its own (96). A connection per
	// forwarder is what reuse gives; the Transport may dial a few more when
	// a request starts while an answered one is still being handed back
	// (21 on a loaded machine), so the bound leaves room for that.
	require.LessOrEqual(t, conns.Load(), int64(2*forwarders), "connections for %d forwards", forwarders*rounds)
}
