package httpapi_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault"
	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

func vaultActorTenant(t *testing.T, ts *testServer, secret string) uuid.UUID {
	t.Helper()
	return vaulttest.Actor(t, ts.svc, secret).TenantID
}

// keyWith makes a key of tenant holding only scope.
func keyWith(t *testing.T, ts *testServer, tenant uuid.UUID, scope vault.Scope) string {
	t.Helper()
	secret, _, err := ts.svc.CreateAPIKey(context.Background(), tenant, []vault.Scope{scope}, "")
	require.NoError(t, err)
	return secret
}

// keyWithout makes a key of tenant holding every scope but scope.
func keyWithout(t *testing.T, ts *testServer, tenant uuid.UUID, scope vault.Scope) string {
	t.Helper()
	var scopes []vault.Scope
	for _, s := range vault.AllScopes {
		if s != scope {
			scopes = append(scopes, s)
		}
	}
	secret, _, err := ts.svc.CreateAPIKey(context.Background(), tenant, scopes, "")
	require.NoError(t, err)
	return secret
}

func mustParse(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	require.NoError(t, err)
	return id
}
