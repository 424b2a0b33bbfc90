package main

import (
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/vault/postgres/vaulttest"
)

// gpgPeer is GnuPG holding the vault's public import key.
type gpgPeer struct {
	*vaulttest.GnuPG
	recipient string // the import key's fingerprint
}

// newGPGPeer imports pub into a fresh GnuPG home.
func newGPGPeer(t *testing.T, pub string) gpgPeer {
	t.Helper()
	g := vaulttest.GPG(t)
	g.ImportKey(pub)
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(pub))
	require.NoError(t, err)
	return gpgPeer{GnuPG: g, recipient: strings.ToUpper(ring[0].PrimaryKey.KeyIdString())}
}

func TestImportFileReadsAStripeExportGnuPGEncrypted(t *testing.T) {
	v := newPGPVault(t)
	g := newGPGPeer(t, v.createPGPKey(t))
	set := stripeExport(t, 7)
	tests := []struct {
		format, clear string
	}{
		{"stripe-csv", set.csv},
		{"stripe-json", set.json},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			path := writeTemp(t, "export.pgp", g.Encrypt(g.recipient, []byte(tt.clear)))
			out, errOut, err := v.importFile(t, tt.format, path)
			require.NoError(t, err, errOut)
			assert.Contains(t, errOut, "row 7: incorrect_number", "the Luhn-invalid row fails alone, named by its row")
			assertNoCardData(t, set, out, errOut)
			v.checkImported(t, set, readMapping(t, strings.TrimSpace(out)))
		})
	}
}

func TestImportFileRefusesADamagedFileOrAnotherKeyClearly(t *testing.T) {
	v := newPGPVault(t)
	g := newGPGPeer(t, v.createPGPKey(t))
	set := stripeExport(t, 0)
	good := g.Encrypt(g.recipient, []byte(set.csv))

	other := newPGPVault(t) // a key that is not this tenant's
	og := newGPGPeer(t, other.createPGPKey(t))

	corrupt := append([]byte(nil), good...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+16; i++ {
		corrupt[i] ^= 0xff
	}
	tests := []struct {
		name string
		file []byte
		want string // the error's message
	}{
		{"truncated", good[:len(good)*2/3], "integrity check failed"},
		{"corrupt", corrupt, "integrity check failed"},
		{"another key", og.Encrypt(og.recipient, []byte(set.csv)), "not encrypted to any live import key"},
		{"not OpenPGP", []byte("id,card.id,card.number\ncus_1,card_1,4242424242424242\n"), "not a readable OpenPGP message"},
		{"cut in its header", good[:40], "not a readable OpenPGP message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := v.importFile(t, "stripe-csv", writeTemp(t, "export.pgp", tt.file))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assertNoCardData(t, set, out, errOut, err.Error())
			assert.NotContains(t, err.Error()+errOut, "4242424242424242")
		})
	}

	t.Run("a tenant without a live key", func(t *testing.T) {
		_, _, err := other.importFile(t, "stripe-csv", writeTemp(t, "export.pgp", good))
		require.Error(t, err, "the other tenant's key cannot open it either")
		keys, _, err := run(t, append([]string{"pgp", "key", "list", "--tenant", other.tenant}, other.db...)...)
		require.NoError(t, err)
		_, _, err = run(t, append([]string{"pgp", "key", "retire", strings.Fields(strings.Split(keys, "\n")[1])[0],
			"--tenant", other.tenant}, other.db...)...)
		require.NoError(t, err)
		_, _, err = other.importFile(t, "stripe-csv", writeTemp(t, "export.pgp", og.Encrypt(og.recipient, []byte(set.csv))))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no live import key", "a retired key opens nothing")
	})

	t.Run("the good file after a truncated one completes the import", func(t *testing.T) {
		out, errOut, err := v.importFile(t, "stripe-csv", writeTemp(t, "export.pgp", good))
		require.NoError(t, err, errOut)
		v.checkImported(t, set, readMapping(t, strings.TrimSpace(out)))
	})
}

// vaulttestGPG returns GnuPG in a fresh home.
func vaulttestGPG(t *testing.T) *vaulttest.GnuPG {
	t.Helper()
	return vaulttest.GPG(t)
}
