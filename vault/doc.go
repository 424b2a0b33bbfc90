// Package vault is cardvault's vocabulary: the domain types (tokens,
// tenants, API keys and scopes, audit events, import jobs, key versions and
// jobs, webhooks), the one registry of error kinds and codes, and the role
// interfaces each caller uses (service.go). It holds no SQL and no crypto:
// vault/postgres implements the interfaces over PostgreSQL and the crypto
// package, and vault/card holds the card logic.
package vault
