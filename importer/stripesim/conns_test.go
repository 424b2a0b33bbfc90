package stripesim

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

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
	require.LessOrEqual(t, conns.Load(), int64(forwarders+4), "connections for %d forwards", forwarders*rounds)
}
