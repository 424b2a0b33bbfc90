package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestATenantFromBeforeKeyVersionsIsBackfilledAndTokenizes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// What a tenant created before migration 002 looks like: keysets, but
	// no key-version rows, and so no sealing-key rows.
	_, err := e.pool.Exec(ctx, `DELETE FROM tenant_key_versions WHERE tenant_id = $1`, e.actor.TenantID)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `DELETE FROM tenant_sealing_keys WHERE tenant_id = $1`, e.actor.TenantID)
	require.NoError(t, err)
	_, _, err = e.svc.Tokenize(ctx, e.actor, visa("pm_old_tenant"))
	require.Error(t, err, "without its sealing-key row the tenant cannot tokenize")

	n, err := e.svc.BackfillKeyVersions(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 2, "its data and fingerprint keysets")
	_, _, err = e.svc.Tokenize(ctx, e.actor, visa("pm_old_tenant"))
	require.NoError(t, err)
	st := e.keyStatus(t)
	require.Len(t, st.Keys, 1)
	assert.Equal(t, "primary", st.Keys[0].State)

	again, err := e.svc.BackfillKeyVersions(ctx)
	require.NoError(t, err)
	assert.Zero(t, again, "a second run finds nothing to do")
	var rows int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM tenant_sealing_keys WHERE tenant_id = $1`, e.actor.TenantID).Scan(&rows))
	assert.Equal(t, 1, rows)
}
