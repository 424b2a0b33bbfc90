package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/card"
)

// TestRetiringAKeyWaitsForWebhookAndImportSecrets: the webhook secret and an
// active import's Stripe key are sealed with the data keyset like cards, so
// an old key is retired only after the re-encryption job re-sealed them too,
// and they still open afterwards.
func TestRetiringAKeyWaitsForWebhookAndImportSecrets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, _, err := e.svc.SetWebhook(ctx, e.actor, "https://hooks.example.com/hooks")
	require.NoError(t, err)
	job, err := e.svc.CreateImport(ctx, e.actor, vault.CreateImportInput{
		Provider: vault.ProviderStripe, StripeAPIKey: card.NewSecret("sk_test_sideRowsUnderAnOldKey")})
	require.NoError(t, err)
	old := keyByState(e.keyStatus(t), "primary")
	_, err = e.svc.RotateDataKey(ctx, e.actor, 0)
	require.NoError(t, err)

	err = e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false)
	require.Equal(t, vault.KindConflict, vault.ErrorKind(err), "no token uses the old key, but the secrets do")

	reencrypt, _, err := e.svc.StartReencrypt(ctx, e.actor)
	require.NoError(t, err)
	_, err = e.svc.RunOneKeyJob(ctx, "worker", reencrypt.ID)
	require.NoError(t, err)
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, false))
	require.NoError(t, e.svc.RetireDataKey(ctx, e.actor, old.KeyID, true))

	creds, err := e.svc.Credentials(ctx, job.ID)
	require.NoError(t, err, "the import's credentials open under the new key")
	require.Equal(t, "sk_test_sideRowsUnderAnOldKey", creds.ProviderKey.Reveal())
	_, err = e.svc.GetWebhook(ctx, e.actor)
	require.NoError(t, err)
}
