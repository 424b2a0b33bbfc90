package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

func TestSeededAuditRowsVerifyAndVerificationResumes(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	const n = 20000
	require.NoError(t, e.svc.SeedAuditEvents(ctx, a.TenantID, n))
	e.tokenize(t, a, 2) // live rows chain on after the seeded ones

	var rows int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1`, a.TenantID).Scan(&rows))
	assert.Greater(t, rows, int64(n))
	r := e.verify(t, &a.TenantID)
	require.True(t, r.OK, "breaks: %+v", r.Breaks)
	assert.Equal(t, rows, r.Rows)

	// A resumed verification walks only what came after the last one.
	e.tokenize(t, a, 3)
	resumed, err := e.svc.VerifyAuditResume(ctx, &a.TenantID)
	require.NoError(t, err)
	require.True(t, resumed.OK, "breaks: %+v", resumed.Breaks)
	assert.Equal(t, int64(3), resumed.Rows, "the three new rows only")

	// An edit behind the resume point is found by a full walk, and one
	// after it by a resumed walk.
	e.tamper(t, `UPDATE audit_events SET detail = '{"edited":true}'
		WHERE id = (SELECT min(id) FROM audit_events WHERE tenant_id = $1 AND chain_lane = 3)`, a.TenantID)
	full := e.verify(t, &a.TenantID)
	require.Len(t, full.Breaks, 1)
	assert.Equal(t, vault.AuditChanged, full.Breaks[0].Reason)
	e.tokenize(t, a, 1)
	e.tamper(t, `UPDATE audit_events SET detail = '{"edited":true}'
		WHERE id = (SELECT max(id) FROM audit_events WHERE tenant_id = $1)`, a.TenantID)
	resumed, err = e.svc.VerifyAuditResume(ctx, &a.TenantID)
	require.NoError(t, err)
	assert.Contains(t, reasons(resumed), vault.AuditChanged)
}

// TestSeededAuditRowsOfPastMonthsGetTheirPartition: rows seeded into a
// month before the current one land in that month's partition, which
// retention can drop, not in the DEFAULT partition.
func TestSeededAuditRowsOfPastMonthsGetTheirPartition(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	e.clock.Advance(time.Date(2030, 4, 1, 0, 30, 0, 0, time.UTC).Sub(e.clock.Now())) // half an hour into April 2030
	require.NoError(t, e.svc.SeedAuditEvents(ctx, a.TenantID, 3600))                 // an hour of rows, one a second

	var inDefault, inMarch int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events_default WHERE occurred_at >= '2030-03-01'`).Scan(&inDefault))
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events_2030_03 WHERE tenant_id = $1`, a.TenantID).Scan(&inMarch))
	assert.Zero(t, inDefault, "no seeded row in the DEFAULT partition")
	assert.InDelta(t, 1800, inMarch, 2, "the half hour of March in March's partition")
	require.True(t, e.verify(t, &a.TenantID).OK)
}
