//go:build ha && linux

package hacluster_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/importer/stripesim"
)

// importRun is one import job of the simulated account.
type importRun struct {
	h   *harness
	id  string
	pms []string // the card payment methods it must import
}

// importRecord is the part of GET /tokens/imports/{id} the test reads.
type importRecord struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Counts struct {
		Total, Attempts, Successes, Failures, Skipped int64
	} `json:"counts"`
}

// startImport gives the simulated account new payment methods (their ids
// differ per phase) and starts an import job of them.
func (h *harness) startImport(t *testing.T, phase int) *importRun {
	t.Helper()
	h.sim.Seed(stripesim.SeedSpec{Customers: importPMs / 10, PaymentMethods: importPMs, LinkEvery: 50, Seed: int64(1000 + phase)})
	run := &importRun{h: h}
	for _, pm := range h.sim.PaymentMethods() {
		if pm.Type == "card" {
			run.pms = append(run.pms, pm.ID)
		}
	}
	b, err := h.api.Call(context.Background(), http.MethodPost, "/tokens/imports",
		[]byte(`{"provider":"stripe","stripe":{"api_key":"`+simKey+`"}}`), http.StatusAccepted)
	require.NoError(t, err)
	var rec importRecord
	require.NoError(t, json.Unmarshal(b, &rec))
	run.id = rec.ID
	return run
}

// get returns the job as the API shows it, or an error while the vault
// answers something else than 200 (503 during a failover).
func (r *importRun) get() (importRecord, error) {
	var rec importRecord
	b, err := r.h.api.Call(context.Background(), http.MethodGet, "/tokens/imports/"+r.id, nil, http.StatusOK)
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	return rec, err
}

// waitProgress waits until n items succeeded: the import is under way.
func (r *importRun) waitProgress(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	poll(t, within, "the import to be under way", func() bool {
		rec, err := r.get()
		return err == nil && rec.Counts.Successes >= n
	})
}

// requireFinishedOnce waits for the job to end and checks it finished
// with every card payment method imported and acknowledged exactly once
// (one 2xx answer to its forwards); forwards answered 503 meanwhile were
// retried.
func (r *importRun) requireFinishedOnce(t *testing.T, res *phaseResult, within time.Duration) {
	t.Helper()
	var rec importRecord
	defer func() {
		if t.Failed() {
			r.quotePending(t)
		}
	}()
	poll(t, within, "the import to end", func() bool {
		var err error
		rec, err = r.get()
		return err == nil && rec.Status != "preparing" && rec.Status != "running"
	})
	require.Equal(t, "finished", rec.Status, "counts %+v", rec.Counts)
	assert.Zero(t, rec.Counts.Failures, "no payment method failed")
	assert.EqualValues(t, len(r.pms), rec.Counts.Successes)
	forwards := r.h.sim.Stats().ForwardsByPM
	var twice []string
	for _, pm := range r.pms {
		ok := 0
		for _, status := range r.h.lb.importAnswers(pm) {
			if status == http.StatusOK || status == http.StatusCreated {
				ok++
			}
		}
		if ok != 1 {
			twice = append(twice, pm)
		}
		res.importForwards += forwards[pm]
	}
	res.importPMs = len(r.pms)
	assertNone(t, "payment methods not acknowledged exactly once", twice)
}

// quotePending logs the job's items still pending: who holds them, until
// when, and their last error.
func (r *importRun) quotePending(t *testing.T) {
	rows, err := r.h.pool().Query(context.Background(), `SELECT payment_method, attempts, coalesce(lease_owner, ''),
		coalesce(lease_until::text, ''), coalesce(last_error, '') FROM import_items WHERE job_id = $1 AND status = 'pending' LIMIT 20`, r.id)
	if err != nil {
		t.Logf("pending items: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var pm, owner, until, lastErr string
		var attempts int
		if rows.Scan(&pm, &attempts, &owner, &until, &lastErr) == nil {
			t.Logf("pending %s: %d attempts, leased to %q until %s, last error %q", pm, attempts, owner, until, lastErr)
		}
	}
}
