package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// TestForwardingDestinationCommands adds a preset and a custom destination
// (with a signature key read from a file), lists them without their
// secrets, and removes one.
func TestForwardingDestinationCommands(t *testing.T) {
	_, kek := vaulttest.KEK(t)
	db := []string{"--database-url", migratedDatabase(t), "--kek-uri", kek}
	out, _, err := run(t, append([]string{"tenant", "create", "forwarder"}, db...)...)
	require.NoError(t, err)
	tenant := strings.TrimSpace(out)
	keyFile := filepath.Join(t.TempDir(), "signature.key")
	require.NoError(t, os.WriteFile(keyFile, []byte("hmac-key-of-the-psp\n"), 0o600))

	out, _, err = run(t, append([]string{"forwarding", "destination", "add", "--tenant", tenant,
		"--preset", "adyen_payments", "--url", "https://checkout-test.adyen.example.com/v70/payments"}, db...)...)
	require.NoError(t, err)
	adyen := strings.TrimSpace(out)
	assert.Regexp(t, `^fwddst_[A-Z2-7]{26}$`, adyen)
	out, _, err = run(t, append([]string{"forwarding", "destination", "add", "--tenant", tenant,
		"--url", "https://psp.example.com/charges/*", "--signature-key-file", keyFile,
		"--config", `{"format":"json","fields":{"card_number":"card.pan","request_signature":"sig"},"signature":{"encoding":"hex"}}`}, db...)...)
	require.NoError(t, err)
	custom := strings.TrimSpace(out)

	out, _, err = run(t, append([]string{"forwarding", "destination", "list", "--tenant", tenant, "--json"}, db...)...)
	require.NoError(t, err)
	var listed []vault.ForwardDestination
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed, 2)
	assert.Equal(t, []string{adyen, custom}, []string{listed[0].ID, listed[1].ID})
	assert.Equal(t, "adyen_payments", listed[0].Preset)
	assert.True(t, listed[1].HasSignatureKey)
	assert.NotContains(t, out, "hmac-key-of-the-psp", "secrets are never listed")

	_, _, err = run(t, append([]string{"forwarding", "destination", "remove", "--tenant", tenant, adyen}, db...)...)
	require.NoError(t, err)
	out, _, err = run(t, append([]string{"forwarding", "destination", "list", "--tenant", tenant}, db...)...)
	require.NoError(t, err)
	assert.NotContains(t, out, adyen)
	assert.Contains(t, out, custom)
	assert.Contains(t, out, "signature-key")

	_, _, err = run(t, append([]string{"forwarding", "destination", "add", "--tenant", tenant,
		"--preset", "no_such_preset", "--url", "https://psp.example.com/pay"}, db...)...)
	assert.ErrorContains(t, err, "no such preset")
	out, _, err = run(t, "forwarding", "presets")
	require.NoError(t, err)
	for _, name := range []string{"stripe_own_vault", "stripe_payment_methods", "adyen_payments", "checkout_payments", "braintree_graphql", "worldpay_xml"} {
		assert.Contains(t, out, `"name": "`+name+`"`)
	}
}
