package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCardVersionsKeepTheGuaranteesTheirForeignKeysGave: migration 027
// replaced token_versions' foreign keys with statement and row triggers;
// each guarantee the keys gave still holds.
func TestCardVersionsKeepTheGuaranteesTheirForeignKeysGave(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tokenize(t, cardOf("pm_version_keys", testNumber(1), "04"))
	e.tokenize(t, cardOf("pm_version_keys", testNumber(2), "04")) // the first card becomes a version
	oldKey := keyByState(e.keyStatus(t), "primary").KeyID
	newKey, err := e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `UPDATE tokens SET key_id = $2 WHERE id = $1`, tok.ID, int64(newKey))
	require.NoError(t, err) // only the version is left under the old key

	tests := []struct {
		name string
		sql  string
		args []any
	}{
		{"a version under a key the tenant does not hold is refused", `INSERT INTO token_versions
			(token_id, tenant_id, key_id, pan_ct, fingerprint, fingerprint_key_id, iin, last_four, pan_length,
			 scheme, exp_month, exp_year, valid_from, replaced_at)
			SELECT token_id, tenant_id, 4242, pan_ct, fingerprint, fingerprint_key_id, iin, last_four, pan_length,
			 scheme, exp_month, exp_year, valid_from, replaced_at FROM token_versions WHERE token_id = $1`, []any{tok.ID}},
		{"moving a version to such a key is refused", `UPDATE token_versions SET key_id = 4242 WHERE token_id = $1`, []any{tok.ID}},
		{"a key that still seals a version cannot go", `DELETE FROM tenant_sealing_keys WHERE tenant_id = $1 AND key_id = $2`,
			[]any{e.actor.TenantID, int64(oldKey)}},
	}
	for _, tt := range tests {
		_, err := e.pool.Exec(ctx, tt.sql, tt.args...)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s: %v", tt.name, err)
		assert.Equal(t, "23503", pgErr.Code, tt.name)
		assert.Equal(t, "token_versions_sealing_key", pgErr.ConstraintName, tt.name)
	}

	require.NoError(t, e.svc.DeleteToken(ctx, e.actor, tok.ID))
	var left int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM token_versions WHERE token_id = $1`, tok.ID).Scan(&left))
	assert.Zero(t, left, "deleting a token deletes its versions")
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, oldKey, false), "nothing seals with the old key any more")
}
