//go:build ha && linux

package hacluster_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/cmd/cardvault/internal/hacluster"
)

// noStandbyWindow is how long both standbys stay down: twice the vault's
// request deadline, so that requests waiting for a standby are seen to end
// in 503 and be sent again meanwhile.
const noStandbyWindow = 30 * time.Second

// noStandbyLeft stops both standbys for noStandbyWindow. With
// number_sync_standbys = 1 the primary cannot have a commit on a second
// server, so it acknowledges none: no request sent while they are down may
// succeed, each ends in a 503 within the request deadline; once a standby
// is back, the waiting commits complete and writes resume.
func (h *harness) noStandbyLeft(t *testing.T, tr *traffic) *phaseResult {
	ctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
	defer cancel()
	r := &phaseResult{name: "no standby left"}
	_, err := h.cluster.WaitHealthy(ctx)
	require.NoError(t, err)
	primary, err := h.cluster.Primary(ctx)
	require.NoError(t, err)
	r.start, r.oldPrimary = time.Now(), primary.Name
	waitAcks(t, tr, r.start, 20, time.Minute)

	r.faultAt = time.Now()
	var standbys []*hacluster.Node
	for _, n := range h.cluster.Nodes {
		if n != primary {
			h.cluster.StopNode(n)
			standbys = append(standbys, n)
		}
	}
	down := time.Now()
	t.Logf("both standbys stopped at %s (%s after the first stop began)", down.Format("15:04:05.000"), down.Sub(r.faultAt).Round(time.Millisecond))
	pause(ctx, noStandbyWindow)
	back := time.Now()
	for _, n := range standbys {
		require.NoError(t, h.cluster.StartNode(n))
	}
	waitRecovery(t, tr, r, 2*time.Minute)
	r.end = time.Now()
	if p, err := h.cluster.Primary(ctx); err == nil {
		r.newPrimary = p.Name
	}

	answers, _ := tr.snapshot()
	var acked, answered503, other int
	for _, a := range answers {
		if a.sent.Before(down) || !a.sent.Before(back) {
			continue
		}
		switch {
		case a.ok() && a.op == "tokenize" && a.done.Before(back):
			acked++ // a commit acknowledged with no standby up
		case a.status == http.StatusServiceUnavailable:
			answered503++
		case !a.ok():
			other++
		}
	}
	t.Logf("no standby for %s: %d tokenizes acknowledged, %d answers 503, %d other failures; writes resumed %s after the standbys were started again",
		back.Sub(down).Round(time.Millisecond), acked, answered503, other, r.recovery.Sub(back).Round(10*time.Millisecond))
	assert.Zero(t, acked, "a write acknowledged while no standby could have it")
	assert.Positive(t, answered503, "requests waiting for a standby end in 503")
	assert.Zero(t, other)
	h.requirePhaseReadsBack(t, tr, r)
	return r
}
