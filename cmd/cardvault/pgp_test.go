package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// pgpVault is a migrated database of its own with a tenant, and the flags
// that reach it.
type pgpVault struct {
	kek    tink.AEAD
	url    string
	db     []string
	tenant string
}

// newPGPVault returns a fresh vault with one tenant.
func newPGPVault(t *testing.T) pgpVault {
	t.Helper()
	aead, kek := vaulttest.KEK(t)
	v := pgpVault{kek: aead, url: migratedDatabase(t)}
	v.db = []string{"--database-url", v.url, "--kek-uri", kek}
	out, _, err := run(t, append([]string{"tenant", "create", "acme"}, v.db...)...)
	require.NoError(t, err)
	v.tenant = strings.TrimSpace(out)
	return v
}

// createPGPKey runs `pgp key create` and returns its stdout.
func (v pgpVault) createPGPKey(t *testing.T) string {
	t.Helper()
	out, _, err := run(t, append([]string{"pgp", "key", "create", "--tenant", v.tenant}, v.db...)...)
	require.NoError(t, err)
	return out
}

// queryOne returns the single value of sql with args.
func (v pgpVault) queryOne(t *testing.T, sql string, dst any, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), v.url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.NoError(t, conn.QueryRow(context.Background(), sql, args...).Scan(dst))
}

func TestPGPKeyCreatePrintsOnlyAnRSA4096PublicKeyAndWrapsThePrivateOne(t *testing.T) {
	v := newPGPVault(t)
	out := v.createPGPKey(t)

	require.True(t, strings.HasPrefix(out, "-----BEGIN PGP PUBLIC KEY BLOCK-----"), "stdout is only the armored public key")
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(out))
	require.NoError(t, err)
	require.Len(t, ring, 1)
	bits, err := ring[0].PrimaryKey.BitLength()
	require.NoError(t, err)
	assert.EqualValues(t, 4096, bits)
	assert.Nil(t, ring[0].PrivateKey, "no private key is printed")

	var wrapped []byte
	v.queryOne(t, `SELECT private_key_wrapped FROM pgp_keys`, &wrapped)
	_, err = openpgp.ReadKeyRing(strings.NewReader(string(wrapped)))
	assert.Error(t, err, "the stored private key is not a readable OpenPGP key: it is wrapped by the root KEK")

	var audited int
	v.queryOne(t, `SELECT count(*) FROM audit_events WHERE action = 'pgp_key.create'`, &audited)
	assert.Equal(t, 1, audited)
}

func TestPGPKeyListAndRetire(t *testing.T) {
	v := newPGPVault(t)
	pub := v.createPGPKey(t)
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(pub))
	require.NoError(t, err)
	fp := strings.ToUpper(ring[0].PrimaryKey.KeyIdString()) // the fingerprint's last 16 digits

	out, _, err := run(t, append([]string{"pgp", "key", "list", "--tenant", v.tenant}, v.db...)...)
	require.NoError(t, err)
	assert.Contains(t, out, fp, "the listing names the key by its fingerprint")
	assert.Contains(t, out, "4096")
	keyID := strings.Fields(strings.Split(out, "\n")[1])[0]

	_, errOut, err := run(t, append([]string{"pgp", "key", "retire", keyID, "--tenant", v.tenant}, v.db...)...)
	require.NoError(t, err)
	assert.Contains(t, errOut, "retired")
	var dropped bool
	v.queryOne(t, `SELECT private_key_wrapped IS NULL FROM pgp_keys WHERE id = $1`, &dropped, keyID)
	assert.True(t, dropped, "retiring drops the private half")

	_, _, err = run(t, append([]string{"pgp", "key", "retire", keyID, "--tenant", v.tenant}, v.db...)...)
	assert.ErrorContains(t, err, "already retired")
	var audited int
	v.queryOne(t, `SELECT count(*) FROM audit_events WHERE action = 'pgp_key.retire'`, &audited)
	assert.Equal(t, 1, audited)
}

func TestRotateRootMovesTheImportKeysToTheNewKEK(t *testing.T) {
	v := newPGPVault(t)
	pub := v.createPGPKey(t)
	set := stripeExport(t, 0)
	newKEK, newURI := vaulttest.KEK(t)
	_, _, err := run(t, append([]string{"keys", "rotate-root", "--new-kek-uri", newURI}, v.db...)...)
	require.NoError(t, err)

	moved := v
	moved.kek, moved.db = newKEK, []string{"--database-url", v.url, "--kek-uri", newURI}
	out, errOut, err := moved.importFile(t, "stripe-csv", writeTemp(t, "export.pgp", encryptTo(t, pub, set.csv)))
	require.NoError(t, err, errOut)
	moved.checkImported(t, set, readMapping(t, strings.TrimSpace(out)))
}
