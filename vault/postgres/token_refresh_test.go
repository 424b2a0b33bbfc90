package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
)

// TestAStaleReplicaUpdatesAnExistingTokenUnderTheCurrentKey: a replica
// whose keys predate a rotation, re-encryption and retire forwards again a
// card whose token exists: once unchanged with a fresh CVC (the refresh),
// once with a new expiry (an update). Each write is refused under the
// retired key and sealed again with the current one: the whole row, CVC
// included, ends under the row's key_id, nothing stays under the retired
// key, and the refreshed CVC opens.
func TestAStaleReplicaUpdatesAnExistingTokenUnderTheCurrentKey(t *testing.T) {
	cases := []struct {
		name   string
		change func(*vault.TokenizeInput)
	}{
		{"refresh", func(*vault.TokenizeInput) {}},
		{"update", func(in *vault.TokenizeInput) { in.Card.ExpYear = "2034" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			replica, ra, _ := e.staleReplica(t)
			tok, _ := e.tokenize(t, visa("pm_stale_existing"))
			_, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
			require.NoError(t, err, "the first reveal destroys the CVC")
			old, added := e.rotateAndReencrypt(t)
			require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old, false))

			in := visa("pm_stale_existing")
			c.change(&in)
			again, created, err := replica.Tokenize(ctx, ra, in)
			require.NoError(t, err)
			assert.False(t, created)
			assert.Equal(t, tok.ID, again.ID)
			var keyID int64
			require.NoError(t, e.pool.QueryRow(ctx, `SELECT key_id FROM tokens WHERE id = $1`, tok.ID).Scan(&keyID))
			assert.Equal(t, int64(added), keyID)
			assert.Zero(t, e.rowsUnderKey(t, old))
			out, err := e.svc.Detokenize(ctx, e.actor, tok.ID, "")
			require.NoError(t, err)
			assert.Equal(t, "123", out.Card.CVC.Reveal(), "the CVC forwarded again opens")
		})
	}
}
