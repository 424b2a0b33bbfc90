package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres"
)

// checkpointed writes checkpoints, exports them, and returns the export.
func (e *auditEnv) checkpointed(t *testing.T) []vault.AuditCheckpoint {
	t.Helper()
	_, err := e.svc.WriteAuditCheckpoints(context.Background(), nil)
	require.NoError(t, err)
	cps, err := e.svc.AuditCheckpoints(context.Background(), nil)
	require.NoError(t, err)
	require.NotEmpty(t, cps)
	return cps
}

// verifyWith verifies the whole trail and an exported set of checkpoints.
func (e *auditEnv) verifyWith(t *testing.T, cps []vault.AuditCheckpoint) vault.AuditReport {
	t.Helper()
	r := e.verify(t, nil)
	require.NoError(t, e.svc.VerifyAuditCheckpoints(context.Background(), cps, &r))
	return r
}

func reasons(r vault.AuditReport) []vault.AuditBreakReason {
	var out []vault.AuditBreakReason
	for _, b := range r.Breaks {
		out = append(out, b.Reason)
	}
	return out
}

func TestAuditCheckpointsCatchATruncatedTailAndARewrite(t *testing.T) {
	e := newAuditEnv(t)
	ctx := context.Background()
	a := e.actor(t)
	e.tokenize(t, a, 10) // lane 0: seq 1–13
	e.failAuth(t)
	cps := e.checkpointed(t)
	r := e.verifyWith(t, cps)
	require.True(t, r.OK, "untouched: green: %+v", r.Breaks)
	var lane0 vault.AuditCheckpoint
	for _, c := range cps {
		if c.Chain == a.TenantID.String() && c.Lane == 0 {
			lane0 = c
		}
	}
	require.Equal(t, int64(13), lane0.Seq)

	t.Run("tail deleted and the head moved back", func(t *testing.T) {
		snap := e.snapshotTenant(t, a.TenantID)
		defer e.restoreTenant(t, a.TenantID, snap)
		e.tamper(t, `DELETE FROM audit_events WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq > 10`, a.TenantID)
		e.exec(t, `UPDATE audit_lanes l SET seq = 10, hash = a.row_hash FROM audit_events a
			WHERE a.tenant_id = l.chain_id AND a.chain_lane = l.lane AND a.chain_seq = 10 AND l.chain_id = $1 AND l.lane = 0`, a.TenantID)
		assert.Equal(t, []vault.AuditBreakReason{vault.AuditTruncated}, reasons(e.verify(t, &a.TenantID)),
			"the stored checkpoint already shows it")
		e.exec(t, `DELETE FROM audit_checkpoints WHERE chain_id = $1`, a.TenantID) // the DBA removes the stored ones too
		assert.True(t, e.verify(t, &a.TenantID).OK, "without a checkpoint a cut tail is only a shorter chain")
		r := e.verifyWith(t, cps)
		assert.Equal(t, []vault.AuditBreakReason{vault.AuditTruncated}, reasons(r), "%+v", r.Breaks)
		assert.Contains(t, r.Breaks[0].Message, "rows 11 to 13 were removed")
	})

	t.Run("row rewritten and the rest re-hashed", func(t *testing.T) {
		snap := e.snapshotTenant(t, a.TenantID)
		defer e.restoreTenant(t, a.TenantID, snap)
		e.tamper(t, `UPDATE audit_events SET detail = '{"edited":true}' WHERE tenant_id = $1 AND chain_lane = 0 AND chain_seq = 12`, a.TenantID)
		require.NoError(t, postgres.ForgeLane(ctx, e.pool, a.TenantID, 0, 12, nil))
		r := e.verifyWith(t, cps)
		assert.Contains(t, reasons(r), vault.AuditChanged)
		assert.Contains(t, reasons(r), vault.AuditRewritten, "the exported checkpoint no longer matches seq 13")
	})

	t.Run("checkpoint forged", func(t *testing.T) {
		forged := append([]vault.AuditCheckpoint(nil), cps...)
		for i := range forged {
			if forged[i].Chain == a.TenantID.String() {
				forged[i].Seq = 9
			}
		}
		r := e.verifyWith(t, forged)
		assert.Contains(t, reasons(r), vault.AuditCheckpointInvalid)
	})

	assert.True(t, e.verifyWith(t, cps).OK, "restored: green again")
}

// snapshotTenant copies the tenant's audit rows, lanes and checkpoints
// aside.
func (e *auditEnv) snapshotTenant(t *testing.T, tenant uuid.UUID) string {
	t.Helper()
	name := "snap_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	e.exec(t, `CREATE TABLE `+name+`_ev AS SELECT * FROM audit_events WHERE tenant_id = $1`, tenant)
	e.exec(t, `CREATE TABLE `+name+`_ln AS SELECT * FROM audit_lanes WHERE chain_id = $1`, tenant)
	e.exec(t, `CREATE TABLE `+name+`_cp AS SELECT * FROM audit_checkpoints WHERE chain_id = $1`, tenant)
	return name
}

// restoreTenant puts back what snapshotTenant copied.
func (e *auditEnv) restoreTenant(t *testing.T, tenant uuid.UUID, name string) {
	t.Helper()
	e.tamper(t, `DELETE FROM audit_events WHERE tenant_id = $1`, tenant)
	e.tamper(t, `INSERT INTO audit_events OVERRIDING SYSTEM VALUE SELECT * FROM `+name+`_ev`)
	e.exec(t, `DELETE FROM audit_lanes WHERE chain_id = $1`, tenant)
	e.exec(t, `INSERT INTO audit_lanes SELECT * FROM `+name+`_ln`)
	e.exec(t, `DELETE FROM audit_checkpoints WHERE chain_id = $1`, tenant)
	e.exec(t, `INSERT INTO audit_checkpoints SELECT * FROM `+name+`_cp`)
	e.exec(t, `DROP TABLE `+name+`_ev, `+name+`_ln, `+name+`_cp`)
}
